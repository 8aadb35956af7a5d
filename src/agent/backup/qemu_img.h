// The qemu-img calls of the offline undo of an overlay (vm_overlay.cc): what an image's header
// says about its backing file, and the commit of an overlay into it while no QEMU runs on it.
//
// qemu-img takes the images' locks like QEMU does, so a call on an image that a running VM
// holds fails (with qemu-img's "Failed to get ... lock") instead of reading or writing beside it.
//
// Threading: free functions; each runs qemu-img once and waits for it.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace strata::agent::qemu_img {

struct ImageInfo {
  std::string format;          // "qcow2", "raw"
  std::string backing_path;    // resolved (full-backing-filename); empty: no backing file
  std::string backing_format;  // as the header records it; may be empty
};

// `qemu-img info --output=json <path>`. Failure: "cannot read the header of image 'P': <...>".
absl::StatusOr<ImageInfo> Info(const std::string& path);

// `qemu-img commit -q -f qcow2 <overlay>`: writes the overlay's data into its immediate backing
// file (never deeper) and empties the overlay. Committing an emptied overlay again changes
// nothing (measured: the base stays byte for byte the same), so a retry after a later step
// failed is harmless. Failure: "cannot commit overlay 'P' into its backing file: <...>".
absl::Status CommitQcow2(const std::string& overlay);

}  // namespace strata::agent::qemu_img
