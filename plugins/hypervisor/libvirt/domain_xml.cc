// ParseDomainXml and the enum names of strata/hypervisor/domain.h, with pugixml.
//
// What is an error and what is not: the parser serves discovery, so it reports as much of a VM
// as it can. Only document-level problems fail the parse (malformed XML, a root other than
// <domain>, no <name>, no <uuid>, a <memory> or <vcpu> that is not a number). Anything odd in
// a single disk is kept and described instead: a disk type this parser does not know (nvme,
// vhostuser, vhostvdpa, or a future one) gives a disk whose source has kind kNone and
// `resolve_error` = "unsupported disk type 'T'", so that it is neither dropped nor mistaken
// for an empty drive.
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/numeric/int128.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "pugixml.hpp"
#include "strata/hypervisor/domain.h"

namespace strata::hypervisor {
namespace {

std::string Attr(const pugi::xml_node& node, const char* name) {
  return node.attribute(name).as_string();
}

// libvirt <disk type=...> / <backingStore type=...>.
std::optional<DiskSourceKind> KindFromType(absl::string_view type) {
  if (type == "file") return DiskSourceKind::kFile;
  if (type == "block") return DiskSourceKind::kBlock;
  if (type == "network") return DiskSourceKind::kNetwork;
  if (type == "volume") return DiskSourceKind::kVolume;
  if (type == "dir") return DiskSourceKind::kDir;
  return std::nullopt;
}

DiskDevice DeviceFromName(absl::string_view device) {
  if (device == "cdrom") return DiskDevice::kCdrom;
  if (device == "floppy") return DiskDevice::kFloppy;
  if (device == "lun") return DiskDevice::kLun;
  // "disk", no attribute (libvirt's default) or a device libvirt itself would have rejected.
  return DiskDevice::kDisk;
}

// Fills `out` from the element that carries type= and a <source> child: a <disk> or a
// <backingStore>. `type` has been read by the caller (a disk without type= is a file disk).
void ParseSource(const pugi::xml_node& element, absl::string_view type, DiskSource& out) {
  std::optional<DiskSourceKind> kind = KindFromType(type);
  if (!kind.has_value()) {
    out.kind = DiskSourceKind::kNone;
    out.resolve_error = type.empty() ? "disk source has no type"
                                     : absl::StrCat("unsupported disk type '", type, "'");
    return;
  }
  const pugi::xml_node source = element.child("source");
  if (!source) {  // an empty removable drive
    out.kind = DiskSourceKind::kNone;
    return;
  }
  out.kind = *kind;
  switch (*kind) {
    case DiskSourceKind::kFile:
      out.path = Attr(source, "file");
      break;
    case DiskSourceKind::kBlock:
      out.path = Attr(source, "dev");
      break;
    case DiskSourceKind::kDir:
      out.path = Attr(source, "dir");
      break;
    case DiskSourceKind::kNetwork:
      out.protocol = Attr(source, "protocol");
      out.name = Attr(source, "name");
      for (const pugi::xml_node& host : source.children("host")) {
        out.hosts.push_back(NetworkHost{.name = Attr(host, "name"),
                                        .port = Attr(host, "port"),
                                        .transport = Attr(host, "transport"),
                                        .socket = Attr(host, "socket")});
      }
      break;
    case DiskSourceKind::kVolume:
      out.pool = Attr(source, "pool");
      out.volume = Attr(source, "volume");
      out.mode = Attr(source, "mode");
      break;
    case DiskSourceKind::kNone:
      break;
  }
  // libvirt writes <source startupPolicy='optional'/> (no path) for an empty cdrom.
  if ((*kind == DiskSourceKind::kFile || *kind == DiskSourceKind::kBlock ||
       *kind == DiskSourceKind::kDir) &&
      out.path.empty()) {
    out.kind = DiskSourceKind::kNone;
  }
}

// <backingStore/> with neither type= nor children ends a chain (no backing image). A missing
// <backingStore> means the chain below is not known; both end the walk.
bool IsChainEnd(const pugi::xml_node& backing) {
  return !backing || (!backing.attribute("type") && !backing.first_child());
}

std::vector<DiskSource> ParseBackingChain(const pugi::xml_node& disk) {
  std::vector<DiskSource> chain;
  for (pugi::xml_node backing = disk.child("backingStore"); !IsChainEnd(backing);
       backing = backing.child("backingStore")) {
    DiskSource image;
    image.format = Attr(backing.child("format"), "type");
    ParseSource(backing, Attr(backing, "type"), image);
    chain.push_back(std::move(image));
  }
  return chain;
}

Disk ParseDisk(const pugi::xml_node& node) {
  Disk disk;
  disk.device = DeviceFromName(Attr(node, "device"));
  disk.target = Attr(node.child("target"), "dev");
  disk.bus = Attr(node.child("target"), "bus");
  disk.readonly = static_cast<bool>(node.child("readonly"));
  disk.shareable = static_cast<bool>(node.child("shareable"));
  disk.serial = node.child("serial").child_value();
  disk.source.format = Attr(node.child("driver"), "type");
  const pugi::xml_attribute type = node.attribute("type");
  ParseSource(node, type ? type.as_string() : "file", disk.source);
  disk.backing_chain = ParseBackingChain(node);
  return disk;
}

// libvirt's scaled integers (virScaleInteger): no unit = KiB; "b"/"byte"/"bytes"; a letter
// k/m/g/t/p/e (any case) alone or followed by "iB" is a power of 1024, followed by "B" a power
// of 1000. The result is rounded up to whole KiB, as libvirt does.
absl::StatusOr<uint64_t> ScaledToKiB(absl::string_view text, absl::string_view unit,
                                     absl::string_view what) {
  uint64_t value = 0;
  if (!absl::SimpleAtoi(text, &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " value '", text, "' is not a non-negative integer"));
  }
  absl::uint128 unit_bytes = 1024;  // no unit: KiB
  if (absl::EqualsIgnoreCase(unit, "b") || absl::EqualsIgnoreCase(unit, "byte") ||
      absl::EqualsIgnoreCase(unit, "bytes")) {
    unit_bytes = 1;
  } else if (!unit.empty()) {
    const absl::string_view suffix = unit.substr(1);
    uint64_t base = 0;
    if (suffix.empty() || absl::EqualsIgnoreCase(suffix, "iB")) {
      base = 1024;
    } else if (absl::EqualsIgnoreCase(suffix, "B")) {
      base = 1000;
    }
    const absl::string_view letters = "kmgtpe";
    const size_t power = letters.find(absl::ascii_tolower(static_cast<unsigned char>(unit[0])));
    if (base == 0 || power == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(what, " has unknown unit '", unit, "'"));
    }
    unit_bytes = 1;
    for (size_t i = 0; i <= power; ++i) unit_bytes *= base;
  }
  const absl::uint128 kib = (absl::uint128(value) * unit_bytes + 1023) / 1024;
  if (kib > std::numeric_limits<uint64_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " value ", text, " ", unit, " is too large"));
  }
  return absl::Uint128Low64(kib);
}

}  // namespace

// DomainStateName, DiskSourceKindName and DiskDeviceName live in the plug-in SDK library
// (src/agent/plugins/hypervisor_names.cc): the agent needs them without libvirt.

absl::StatusOr<Domain> ParseDomainXml(std::string_view xml) {
  pugi::xml_document document;
  const pugi::xml_parse_result parsed =
      document.load_buffer(xml.data(), xml.size(), pugi::parse_default, pugi::encoding_utf8);
  if (!parsed) {
    return absl::InvalidArgumentError(absl::StrCat(
        "domain XML is malformed: ", parsed.description(), " at offset ", parsed.offset));
  }
  const pugi::xml_node root = document.document_element();
  if (std::string_view(root.name()) != "domain") {
    return absl::InvalidArgumentError(
        absl::StrCat("domain XML has root element <", root.name(), ">, expected <domain>"));
  }

  Domain domain;
  domain.name = root.child("name").child_value();
  if (domain.name.empty()) return absl::InvalidArgumentError("domain XML has no <name>");
  const std::string prefix = absl::StrCat("domain XML of VM '", domain.name, "'");
  domain.uuid = std::string(absl::StripAsciiWhitespace(root.child("uuid").child_value()));
  if (domain.uuid.empty())
    return absl::InvalidArgumentError(absl::StrCat(prefix, " has no <uuid>"));
  domain.hypervisor_type = Attr(root, "type");

  if (const pugi::xml_node memory = root.child("memory")) {
    absl::StatusOr<uint64_t> kib = ScaledToKiB(absl::StripAsciiWhitespace(memory.child_value()),
                                               Attr(memory, "unit"), "<memory>");
    if (!kib.ok())
      return absl::InvalidArgumentError(absl::StrCat(prefix, ": ", kib.status().message()));
    domain.memory_kib = *kib;
  }
  domain.vcpus = 1;  // libvirt's default when <vcpu> is absent
  if (const pugi::xml_node vcpu = root.child("vcpu")) {
    // The text is the maximum vCPU count (current= may bring fewer online).
    const absl::string_view text = absl::StripAsciiWhitespace(vcpu.child_value());
    if (!absl::SimpleAtoi(text, &domain.vcpus)) {
      return absl::InvalidArgumentError(
          absl::StrCat(prefix, ": <vcpu> value '", text, "' is not a non-negative integer"));
    }
  }

  for (const pugi::xml_node& disk : root.child("devices").children("disk")) {
    domain.disks.push_back(ParseDisk(disk));
  }
  domain.xml = std::string(xml);
  return domain;
}

}  // namespace strata::hypervisor
