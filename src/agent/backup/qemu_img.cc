#include "qemu_img.h"

#include "nlohmann/json.hpp"
#include "strata/util/process.h"
#include "strata/util/strings.h"

namespace strata::agent::qemu_img {

absl::StatusOr<ImageInfo> Info(const std::string& path) {
  const std::string what = util::Cat("cannot read the header of image '", path, "'");
  absl::StatusOr<std::string> out =
      util::RunProcessOrError({"qemu-img", "info", "--output=json", path});
  if (!out.ok())
    return absl::Status(out.status().code(), util::Cat(what, ": ", out.status().message()));
  nlohmann::json json = nlohmann::json::parse(*out, nullptr, false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::InternalError(util::Cat(what, ": qemu-img info printed no JSON object: ", *out));
  }
  ImageInfo info;
  info.format = json.value("format", "");
  info.backing_path = json.value("full-backing-filename", json.value("backing-filename", ""));
  info.backing_format = json.value("backing-filename-format", "");
  return info;
}

absl::Status CommitQcow2(const std::string& overlay) {
  absl::StatusOr<std::string> out =
      util::RunProcessOrError({"qemu-img", "commit", "-q", "-f", "qcow2", overlay});
  if (out.ok()) return absl::OkStatus();
  return absl::Status(out.status().code(),
                      util::Cat("cannot commit overlay '", overlay,
                                "' into its backing file: ", out.status().message()));
}

}  // namespace strata::agent::qemu_img
