// src/storage's view of the shared string helpers.
#pragma once

#include "strata/util/strings.h"

namespace strata::storage {
using util::Cat;
using util::Join;
using util::ParseUint;
using util::Split;
using util::StartsWith;
using util::StripPrefix;
using util::ToLower;
using util::Trim;
}  // namespace strata::storage
