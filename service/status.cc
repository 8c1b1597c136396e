#include "service/status.h"

#include <string>

#include "nokv/status.h"

namespace nokv::service {

grpc::Status ToGrpcStatus(int rc, const char* message) {
  std::string msg = message != nullptr && *message != '\0' ? message : nokv_strerror(rc);
  switch (rc) {
    case NOKV_OK:
      return grpc::Status::OK;
    case NOKV_ENOTFOUND:
      return grpc::Status(grpc::StatusCode::NOT_FOUND, msg);
    case NOKV_EINVAL:
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, msg);
    case NOKV_ECORRUPT:
      return grpc::Status(grpc::StatusCode::DATA_LOSS, msg);
    case NOKV_ENOMEM:
    case NOKV_EFULL:
    case NOKV_EHOTKEY:
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, msg);
    case NOKV_EBUSY:
    case NOKV_ECLOSED:
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, msg);
    case NOKV_ETIMEDOUT:
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, msg);
    case NOKV_ECANCELED:
      return grpc::Status(grpc::StatusCode::CANCELLED, msg);
    case NOKV_ESTALE:
    case NOKV_ECONDITION:  // Write answers it as succeeded = false instead
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, msg);
    case NOKV_ECONFLICT:
      // The engine's message says to retry; make sure the client hears it.
      if (msg.find("retry") == std::string::npos) {
        msg += " (the transaction conflicted with a concurrent commit; retry it)";
      }
      return grpc::Status(grpc::StatusCode::ABORTED, msg);
    case NOKV_EIO:
    default:
      return grpc::Status(grpc::StatusCode::INTERNAL, msg);
  }
}

}  // namespace nokv::service
