// What the service does differently as one replica of a Raft group
// (docs/replication.md): writes go through the group's log, linearizable reads
// wait for a read point from the leader, and a node that does not lead says
// who does.
#ifndef NOKV_SERVICE_CLUSTER_H
#define NOKV_SERVICE_CLUSTER_H

#include <grpcpp/grpcpp.h>

#include "nokv/v1/kv.pb.h"
#include "repl/node.h"

namespace nokv::service {

// Trailing metadata naming the leader, on calls this node cannot serve.
inline constexpr char kLeaderHeader[] = "nokv-leader";        // the address clients dial
inline constexpr char kLeaderIdHeader[] = "nokv-leader-id";

// The status for rc (not NOKV_OK) from a replicated call: UNAVAILABLE when
// this node does not lead (then ctx's trailing metadata names the leader) or
// stops, UNKNOWN when leadership was lost after the write was proposed (it may
// yet commit), else the engine's mapping.
grpc::Status ReplicationStatus(nokv_repl_node* node, grpc::ServerContextBase* ctx, int rc);

// Fills a Stats response's cluster section.
void FillClusterStatus(const nokv_repl_status& st, nokv::v1::ClusterStatus* out);

}  // namespace nokv::service

#endif  // NOKV_SERVICE_CLUSTER_H
