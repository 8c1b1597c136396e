// gRPC server reflection (grpc.reflection.v1 and v1alpha), so that grpcurl and
// other generic clients need no .proto files. gRPC's own reflection plugin
// cannot be put behind the server's bearer token; this one checks it first when
// given a TokenAuth (--auth_reflection). Descriptors come from the generated
// pool: every message and service linked into the server.
#ifndef NOKV_SERVICE_REFLECTION_H
#define NOKV_SERVICE_REFLECTION_H

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "service/auth.h"

namespace nokv::service {

// The reflection services (v1 and v1alpha) listing `services` (their own names
// are added). auth, if not null, is borrowed and must outlive them.
std::vector<std::unique_ptr<grpc::Service>> NewReflectionServices(
    std::vector<std::string> services, TokenAuth* auth);

}  // namespace nokv::service

#endif  // NOKV_SERVICE_REFLECTION_H
