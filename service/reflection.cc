#include "service/reflection.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>

#include <unordered_set>
#include <utility>

#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"

namespace nokv::service {

namespace {

namespace pb = google::protobuf;

// One version of the protocol: V is grpc::reflection::v1 or v1alpha, whose
// messages are field for field the same.
template <typename Service, typename Request, typename Response>
class Reflection final : public Service {
 public:
  Reflection(std::shared_ptr<const std::vector<std::string>> services, TokenAuth* auth)
      : services_(std::move(services)), auth_(auth) {}

  grpc::ServerBidiReactor<Request, Response>* ServerReflectionInfo(
      grpc::CallbackServerContext* ctx) override {
    return new Stream(this, ctx);
  }

 private:
  // Answers one request at a time: read, answer, write, read the next.
  class Stream final : public grpc::ServerBidiReactor<Request, Response> {
   public:
    Stream(Reflection* r, grpc::CallbackServerContext* ctx) : r_(r) {
      if (r_->auth_ != nullptr) {
        if (grpc::Status s = r_->auth_->Check(ctx); !s.ok()) {
          this->Finish(std::move(s));
          return;
        }
      }
      this->StartRead(&req_);
    }
    void OnReadDone(bool ok) override {
      if (!ok) {
        this->Finish(grpc::Status::OK);  // the client is done asking
        return;
      }
      resp_.Clear();
      r_->Answer(req_, &sent_, &resp_);
      this->StartWrite(&resp_);
    }
    void OnWriteDone(bool ok) override {
      if (!ok) {
        this->Finish(grpc::Status::CANCELLED);
        return;
      }
      this->StartRead(&req_);
    }
    void OnDone() override { delete this; }

   private:
    Reflection* const r_;
    Request req_;
    Response resp_;
    std::unordered_set<std::string> sent_;  // files this stream already has
  };

  static void Error(Response* resp, grpc::StatusCode code, const std::string& msg) {
    resp->mutable_error_response()->set_error_code(static_cast<int>(code));
    resp->mutable_error_response()->set_error_message(msg);
  }

  // The file, then those of its dependencies the stream has not been sent.
  static void AddFile(const pb::FileDescriptor* file, std::unordered_set<std::string>* sent,
                      Response* resp, bool always) {
    if (!sent->insert(file->name()).second && !always) return;
    pb::FileDescriptorProto proto;
    file->CopyTo(&proto);
    proto.SerializeToString(resp->mutable_file_descriptor_response()->add_file_descriptor_proto());
    for (int i = 0; i < file->dependency_count(); i++) {
      AddFile(file->dependency(i), sent, resp, false);
    }
  }

  void Answer(const Request& req, std::unordered_set<std::string>* sent, Response* resp) {
    const pb::DescriptorPool* pool = pb::DescriptorPool::generated_pool();
    resp->set_valid_host(req.host());
    *resp->mutable_original_request() = req;
    switch (req.message_request_case()) {
      case Request::kListServices:
        for (const std::string& name : *services_) {
          resp->mutable_list_services_response()->add_service()->set_name(name);
        }
        return;
      case Request::kFileByFilename: {
        const pb::FileDescriptor* f = pool->FindFileByName(req.file_by_filename());
        if (f == nullptr) return Error(resp, grpc::StatusCode::NOT_FOUND, "File not found.");
        return AddFile(f, sent, resp, true);
      }
      case Request::kFileContainingSymbol: {
        const pb::FileDescriptor* f = pool->FindFileContainingSymbol(req.file_containing_symbol());
        if (f == nullptr) return Error(resp, grpc::StatusCode::NOT_FOUND, "Symbol not found.");
        return AddFile(f, sent, resp, true);
      }
      case Request::kFileContainingExtension: {
        const auto& ext = req.file_containing_extension();
        const pb::Descriptor* type = pool->FindMessageTypeByName(ext.containing_type());
        const pb::FieldDescriptor* field =
            type == nullptr ? nullptr : pool->FindExtensionByNumber(type, ext.extension_number());
        if (field == nullptr) {
          return Error(resp, grpc::StatusCode::NOT_FOUND, "Extension not found.");
        }
        return AddFile(field->file(), sent, resp, true);
      }
      case Request::kAllExtensionNumbersOfType: {
        const pb::Descriptor* type = pool->FindMessageTypeByName(req.all_extension_numbers_of_type());
        if (type == nullptr) return Error(resp, grpc::StatusCode::NOT_FOUND, "Type not found.");
        std::vector<const pb::FieldDescriptor*> exts;
        pool->FindAllExtensions(type, &exts);
        auto* out = resp->mutable_all_extension_numbers_response();
        out->set_base_type_name(type->full_name());
        for (const pb::FieldDescriptor* e : exts) out->add_extension_number(e->number());
        return;
      }
      default:
        return Error(resp, grpc::StatusCode::INVALID_ARGUMENT, "No request given.");
    }
  }

  const std::shared_ptr<const std::vector<std::string>> services_;
  TokenAuth* const auth_;
};

}  // namespace

std::vector<std::unique_ptr<grpc::Service>> NewReflectionServices(std::vector<std::string> services,
                                                                  TokenAuth* auth) {
  namespace v1 = grpc::reflection::v1;
  namespace v1alpha = grpc::reflection::v1alpha;
  services.push_back(v1::ServerReflection::service_full_name());
  services.push_back(v1alpha::ServerReflection::service_full_name());
  auto names = std::make_shared<const std::vector<std::string>>(std::move(services));
  std::vector<std::unique_ptr<grpc::Service>> out;
  out.push_back(std::make_unique<Reflection<v1::ServerReflection::CallbackService,
                                            v1::ServerReflectionRequest,
                                            v1::ServerReflectionResponse>>(names, auth));
  out.push_back(std::make_unique<Reflection<v1alpha::ServerReflection::CallbackService,
                                            v1alpha::ServerReflectionRequest,
                                            v1alpha::ServerReflectionResponse>>(names, auth));
  return out;
}

}  // namespace nokv::service
