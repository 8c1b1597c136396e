#include "service/cluster.h"

#include <string>

#include "service/status.h"

namespace nokv::service {

grpc::Status ReplicationStatus(nokv_repl_node* node, grpc::ServerContextBase* ctx, int rc) {
  switch (rc) {
    case NOKV_REPL_ENOTLEADER: {
      char addr[NOKV_REPL_ADDR_MAX];
      uint64_t leader = nokv_repl_leader(node, addr, sizeof addr);
      std::string msg = "this node does not lead the cluster";
      if (leader != 0) {
        ctx->AddTrailingMetadata(kLeaderIdHeader, std::to_string(leader));
        if (addr[0] != '\0') {
          ctx->AddTrailingMetadata(kLeaderHeader, addr);
          msg += "; the leader is node " + std::to_string(leader) + " at " + addr;
        } else {
          msg += "; the leader is node " + std::to_string(leader);
        }
      } else {
        msg += " and knows no leader (an election is under way); retry";
      }
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, msg);
    }
    case NOKV_REPL_EUNKNOWN:
      return grpc::Status(grpc::StatusCode::UNKNOWN,
                          "leadership changed after the write was proposed: it may or may not "
                          "have been committed; read it back before retrying");
    case NOKV_REPL_ESTOPPED:
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the node is shutting down");
    default:
      return ToGrpcStatus(rc, nullptr);
  }
}

void FillClusterStatus(const nokv_repl_status& st, nokv::v1::ClusterStatus* out) {
  out->set_node_id(st.id);
  out->set_state(nokv_repl_state_name(st.state));
  out->set_term(st.term);
  out->set_leader_id(st.leader_id);
  out->set_leader_address(st.leader_client_address);
  out->set_commit_index(st.commit_index);
  out->set_applied_index(st.applied_index);
  out->set_last_index(st.last_index);
  out->set_snapshot_index(st.snapshot_index);
  out->set_lease_remaining_ms(static_cast<uint64_t>(st.lease_ms));
  out->set_lease_reads(st.lease_reads);
  out->set_barrier_reads(st.barrier_reads);
  for (size_t i = 0; i < st.n_members; i++) {
    nokv::v1::ClusterMember* m = out->add_members();
    m->set_id(st.members[i].id);
    m->set_raft_address(st.members[i].address);
    m->set_role(nokv_repl_role_name(st.members[i].role));
    m->set_match_index(st.members[i].match_index);
  }
}

}  // namespace nokv::service
