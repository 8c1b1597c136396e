// The one place where engine status codes become gRPC status codes.
#ifndef NOKV_SERVICE_STATUS_H
#define NOKV_SERVICE_STATUS_H

#include <grpcpp/support/status.h>

namespace nokv::service {

// rc is a NOKV_* code; the message is the engine's detailed text (nokv_errmsg()).
grpc::Status ToGrpcStatus(int rc, const char* message);

}  // namespace nokv::service

#endif  // NOKV_SERVICE_STATUS_H
