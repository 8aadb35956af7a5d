// src/core's view of the shared string helpers.
#pragma once

#include "strata/util/strings.h"

namespace strata::core::internal {
using util::Append;
using util::Cat;
using util::ToStd;
}  // namespace strata::core::internal
