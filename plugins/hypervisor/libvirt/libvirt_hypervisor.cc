#include "libvirt_hypervisor.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string_view>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "pugixml.hpp"
#include "strata/core/status_macros.h"

namespace strata::hypervisor {
namespace {

// ---- RAII for libvirt objects -------------------------------------------------------------

struct DomainFree {
  void operator()(virDomainPtr domain) const { virDomainFree(domain); }
};
struct PoolFree {
  void operator()(virStoragePoolPtr pool) const { virStoragePoolFree(pool); }
};
struct VolumeFree {
  void operator()(virStorageVolPtr volume) const { virStorageVolFree(volume); }
};
struct SnapshotFree {
  void operator()(virDomainSnapshotPtr snapshot) const { virDomainSnapshotFree(snapshot); }
};
struct MallocFree {  // strings and arrays libvirt allocates for the caller
  void operator()(void* memory) const { std::free(memory); }
};
using DomainPtr = std::unique_ptr<virDomain, DomainFree>;
using PoolPtr = std::unique_ptr<virStoragePool, PoolFree>;
using VolumePtr = std::unique_ptr<virStorageVol, VolumeFree>;
using SnapshotPtr = std::unique_ptr<virDomainSnapshot, SnapshotFree>;
using CString = std::unique_ptr<char, MallocFree>;

// ---- errors ----------------------------------------------------------------------------------

void DiscardLibvirtError(void* /*user_data*/, virErrorPtr /*error*/) {}

void WakeEventLoop(int /*timer*/, void* /*opaque*/) {}

void InitLibvirtOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    // A failure here shows again, with libvirt's message, in the virConnectOpen that follows.
    (void)virInitialize();
    virSetErrorFunc(nullptr, DiscardLibvirtError);
    // Must precede every virConnectOpen of the process: connections pick the loop up when
    // they are opened (events, keepalive).
    (void)virEventRegisterDefaultImpl();
    // Wakes the loop every 100 ms so that its thread notices a stop request.
    (void)virEventAddTimeout(100, WakeEventLoop, nullptr, nullptr);
  });
}

// The one thread running libvirt's default event loop, while at least one user holds it.
class EventLoopThread {
 public:
  static EventLoopThread& Get() {
    static EventLoopThread* loop = new EventLoopThread();  // never destroyed: exit-safe
    return *loop;
  }
  void Acquire() {
    std::lock_guard lock(mutex_);
    if (users_++ > 0) return;
    running_.store(true);
    thread_ = std::thread([this] {
      while (running_.load()) {
        if (virEventRunDefaultImpl() < 0)
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    });
  }
  void Release() {
    std::lock_guard lock(mutex_);
    if (--users_ > 0) return;
    running_.store(false);
    if (thread_.joinable()) thread_.join();  // the 100 ms timer wakes it
  }

 private:
  std::mutex mutex_;
  int users_ = 0;
  std::atomic<bool> running_{false};
  std::thread thread_;
};

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The message of the last libvirt error of this thread (libvirt keeps it per thread).
std::string LastLibvirtMessage() {
  const char* message = virGetLastErrorMessage();
  return message != nullptr ? message : "unknown libvirt error";
}

absl::StatusCode LastLibvirtStatusCode() {
  switch (virGetLastErrorCode()) {
    case VIR_ERR_NO_DOMAIN:
    case VIR_ERR_NO_STORAGE_POOL:
    case VIR_ERR_NO_STORAGE_VOL:
    case VIR_ERR_NO_DOMAIN_SNAPSHOT:
      return absl::StatusCode::kNotFound;
    case VIR_ERR_INVALID_ARG:  // also virCheckFlags: "unsupported flags (0x10) in function ..."
    case VIR_ERR_XML_ERROR:
    case VIR_ERR_XML_DETAIL:
    case VIR_ERR_CONFIG_UNSUPPORTED:
      return absl::StatusCode::kInvalidArgument;
    case VIR_ERR_OPERATION_INVALID:  // "domain is not running", "domain is already running"
    case VIR_ERR_BLOCK_COPY_ACTIVE:
      return absl::StatusCode::kFailedPrecondition;
    case VIR_ERR_AGENT_UNRESPONSIVE:
    case VIR_ERR_AGENT_UNSYNCED:
      return absl::StatusCode::kUnavailable;
    case VIR_ERR_NO_CONNECT:
    case VIR_ERR_INVALID_CONN:
    case VIR_ERR_SYSTEM_ERROR:
    case VIR_ERR_RPC:
      return absl::StatusCode::kUnavailable;
    case VIR_ERR_AUTH_FAILED:
    case VIR_ERR_AUTH_CANCELLED:
    case VIR_ERR_AUTH_UNAVAILABLE:
    case VIR_ERR_ACCESS_DENIED:
    case VIR_ERR_OPERATION_DENIED:
      return absl::StatusCode::kPermissionDenied;
    case VIR_ERR_NO_SUPPORT:
    case VIR_ERR_ARGUMENT_UNSUPPORTED:  // e.g. "QEMU guest agent is not configured"
    case VIR_ERR_OPERATION_UNSUPPORTED:
      return absl::StatusCode::kUnimplemented;
    case VIR_ERR_OPERATION_TIMEOUT:
      return absl::StatusCode::kDeadlineExceeded;
    default:
      return absl::StatusCode::kInternal;
  }
}

// "<what>: <libvirt message>", with a code mapped from libvirt's error number.
absl::Status LibvirtError(absl::string_view what) {
  return absl::Status(LastLibvirtStatusCode(), absl::StrCat(what, ": ", LastLibvirtMessage()));
}

bool LastErrorIs(int code) { return virGetLastErrorCode() == code; }

DomainState StateFromLibvirt(int state) {
  switch (state) {
    case VIR_DOMAIN_RUNNING:
      return DomainState::kRunning;
    case VIR_DOMAIN_BLOCKED:
      return DomainState::kBlocked;
    case VIR_DOMAIN_PAUSED:
      return DomainState::kPaused;
    case VIR_DOMAIN_SHUTDOWN:
      return DomainState::kShutdown;
    case VIR_DOMAIN_SHUTOFF:
      return DomainState::kShutoff;
    case VIR_DOMAIN_CRASHED:
      return DomainState::kCrashed;
    case VIR_DOMAIN_PMSUSPENDED:
      return DomainState::kSuspended;
    default:  // VIR_DOMAIN_NOSTATE and states newer than this code
      return DomainState::kUnknown;
  }
}

// Fills `path` of volume sources from their pools; remembers pools for one listing.
class VolumeResolver {
 public:
  explicit VolumeResolver(virConnectPtr connection) : connection_(connection) {}

  void Resolve(DiskSource& source) {
    if (source.kind != DiskSourceKind::kVolume) return;
    auto fail = [&source](absl::string_view reason) {
      source.resolve_error = absl::StrCat("cannot resolve volume '", source.volume,
                                          "' in storage pool '", source.pool, "': ", reason);
    };
    if (source.pool.empty() || source.volume.empty()) {
      fail("the disk source names no pool or no volume");
      return;
    }
    auto [it, inserted] = pools_.try_emplace(source.pool);
    PoolLookup& lookup = it->second;
    if (inserted) {
      lookup.pool.reset(virStoragePoolLookupByName(connection_, source.pool.c_str()));
      if (!lookup.pool) lookup.error = LastLibvirtMessage();
    }
    if (!lookup.pool) {
      fail(lookup.error);
      return;
    }
    VolumePtr volume(virStorageVolLookupByName(lookup.pool.get(), source.volume.c_str()));
    if (!volume) {
      fail(LastLibvirtMessage());
      return;
    }
    CString path(virStorageVolGetPath(volume.get()));
    if (!path) {
      fail(LastLibvirtMessage());
      return;
    }
    source.path = path.get();
  }

 private:
  struct PoolLookup {
    PoolPtr pool;
    std::string error;  // libvirt's message when the lookup failed
  };
  virConnectPtr connection_;
  std::map<std::string, PoolLookup> pools_;
};

// One domain as a Domain. NotFound when it disappeared meanwhile (a transient VM that stopped).
absl::StatusOr<Domain> DescribeDomain(virDomainPtr domain, VolumeResolver& volumes,
                                      absl::string_view uri) {
  char uuid[VIR_UUID_STRING_BUFLEN] = {};
  if (virDomainGetUUIDString(domain, uuid) < 0) {
    return LibvirtError(absl::StrCat("cannot read the UUID of a VM on hypervisor '", uri, "'"));
  }
  const char* name = virDomainGetName(domain);  // owned by `domain`
  if (name == nullptr) {
    return LibvirtError(
        absl::StrCat("cannot read the name of VM ", uuid, " on hypervisor '", uri, "'"));
  }
  const std::string context = absl::StrCat("VM '", name, "' on hypervisor '", uri, "'");
  int state = VIR_DOMAIN_NOSTATE;
  int reason = 0;
  if (virDomainGetState(domain, &state, &reason, 0) < 0) {
    return LibvirtError(absl::StrCat("cannot read the state of ", context));
  }
  const int persistent = virDomainIsPersistent(domain);
  if (persistent < 0) {
    return LibvirtError(absl::StrCat("cannot read whether ", context, " is persistent"));
  }
  CString xml(virDomainGetXMLDesc(domain, 0));
  if (!xml) return LibvirtError(absl::StrCat("cannot read the XML of ", context));

  Domain result = libvirt_internal::MakeListedDomain(uuid, name, StateFromLibvirt(state),
                                                     persistent == 1, xml.get());
  for (Disk& disk : result.disks) {
    volumes.Resolve(disk.source);
    for (DiskSource& backing : disk.backing_chain) volumes.Resolve(backing);
  }
  return result;
}

// A domain by UUID, then by name (as virsh). NotFound "VM 'X' not found on hypervisor 'URI'".
absl::StatusOr<DomainPtr> LookUpDomain(virConnectPtr connection, absl::string_view uri,
                                       const std::string& vm) {
  // A string that is no UUID fails with INVALID_ARG.
  DomainPtr domain(virDomainLookupByUUIDString(connection, vm.c_str()));
  if (!domain && !LastErrorIs(VIR_ERR_NO_DOMAIN) && !LastErrorIs(VIR_ERR_INVALID_ARG)) {
    return LibvirtError(absl::StrCat("cannot look up VM '", vm, "' on hypervisor '", uri, "'"));
  }
  if (!domain) domain.reset(virDomainLookupByName(connection, vm.c_str()));
  if (!domain) {
    if (LastErrorIs(VIR_ERR_NO_DOMAIN) || LastErrorIs(VIR_ERR_INVALID_ARG)) {
      return absl::NotFoundError(absl::StrCat("VM '", vm, "' not found on hypervisor '", uri, "'"));
    }
    return LibvirtError(absl::StrCat("cannot look up VM '", vm, "' on hypervisor '", uri, "'"));
  }
  return domain;
}

absl::StatusOr<DomainState> StateOfDomain(virDomainPtr domain, absl::string_view context) {
  int state = VIR_DOMAIN_NOSTATE;
  int reason = 0;
  if (virDomainGetState(domain, &state, &reason, 0) < 0) {
    return LibvirtError(absl::StrCat("cannot read the state of ", context));
  }
  return StateFromLibvirt(state);
}

// "<domainsnapshot>" for `request`, built with pugixml (names are escaped by the serializer).
// disk_only: `disk_targets` are the VM's disks in order; those without an overlay get
// snapshot='no'.
std::string SnapshotXml(const VmSnapshotRequest& request,
                        const std::vector<std::string>& disk_targets) {
  pugi::xml_document document;
  pugi::xml_node root = document.append_child("domainsnapshot");
  if (!request.name.empty()) root.append_child("name").text().set(request.name.c_str());
  if (!request.description.empty()) {
    root.append_child("description").text().set(request.description.c_str());
  }
  if (request.disk_only) {
    pugi::xml_node disks = root.append_child("disks");
    for (const std::string& target : disk_targets) {
      pugi::xml_node disk = disks.append_child("disk");
      disk.append_attribute("name").set_value(target.c_str());
      auto overlay = std::find_if(request.overlays.begin(), request.overlays.end(),
                                  [&target](const auto& entry) { return entry.first == target; });
      if (overlay == request.overlays.end()) {
        disk.append_attribute("snapshot").set_value("no");
        continue;
      }
      disk.append_attribute("snapshot").set_value("external");
      disk.append_attribute("type").set_value("file");
      disk.append_child("source").append_attribute("file").set_value(overlay->second.c_str());
    }
  }
  std::ostringstream out;
  document.save(out, "", pugi::format_raw | pugi::format_no_declaration);
  return out.str();
}

// (target, file) of every external disk in a <domainsnapshot> document, in document order.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ExternalOverlays(
    const char* snapshot_xml) {
  pugi::xml_document document;
  pugi::xml_parse_result parsed = document.load_string(snapshot_xml);
  if (!parsed) {
    return absl::InternalError(absl::StrCat("snapshot XML is malformed: ", parsed.description()));
  }
  std::vector<std::pair<std::string, std::string>> overlays;
  for (pugi::xml_node disk : document.child("domainsnapshot").child("disks").children("disk")) {
    if (std::string_view(disk.attribute("snapshot").as_string()) != "external") continue;
    pugi::xml_node source = disk.child("source");
    std::string path = source.attribute("file").as_string();
    if (path.empty()) path = source.attribute("dev").as_string();
    overlays.emplace_back(disk.attribute("name").as_string(), std::move(path));
  }
  return overlays;
}

}  // namespace

namespace libvirt_internal {

Domain MakeListedDomain(std::string uuid, std::string name, DomainState state, bool persistent,
                        std::string xml) {
  absl::StatusOr<Domain> parsed = ParseDomainXml(xml);
  Domain domain;
  if (parsed.ok()) {
    domain = *std::move(parsed);
  } else {
    domain.parse_error = absl::StrCat("cannot parse the XML of VM '", name, "' (", uuid,
                                      "): ", parsed.status().message());
    domain.xml = std::move(xml);
  }
  // libvirt's own view of identity wins over the XML text.
  domain.uuid = std::move(uuid);
  domain.name = std::move(name);
  domain.state = state;
  domain.persistent = persistent;
  return domain;
}

}  // namespace libvirt_internal

// ---- events -----------------------------------------------------------------------------------

// Shared by the object and every registered callback (each holds a heap shared_ptr as opaque,
// freed by libvirt's free callback), so a late callback never sees a dead object.
struct LibvirtHypervisor::EventState {
  std::mutex mutex;  // held only to read or replace `sink`; never while calling libvirt
  EventSink sink;    // empty once unsubscribed

  void Deliver(HypervisorEvent event) {
    std::lock_guard lock(mutex);
    if (sink) sink(std::move(event));
  }
};

namespace {

using EventStatePtr = std::shared_ptr<LibvirtHypervisor::EventState>;

LibvirtHypervisor::EventState& StateOf(void* opaque) {
  return **static_cast<EventStatePtr*>(opaque);
}
void FreeStateBox(void* opaque) { delete static_cast<EventStatePtr*>(opaque); }

// Copies what identifies `domain` (local accessors: no call to the hypervisor).
HypervisorEvent EventFor(virDomainPtr domain, EventKind kind, std::string detail) {
  HypervisorEvent event;
  char uuid[VIR_UUID_STRING_BUFLEN] = {};
  if (domain != nullptr && virDomainGetUUIDString(domain, uuid) == 0) event.vm_uuid = uuid;
  const char* name = domain != nullptr ? virDomainGetName(domain) : nullptr;
  if (name != nullptr) event.vm_name = name;
  event.kind = kind;
  event.detail = std::move(detail);
  event.time_unix_ms = NowUnixMs();
  return event;
}

std::string Text(const char* text) { return text != nullptr ? text : ""; }

// (kind, detail name) of a lifecycle event.
std::pair<EventKind, std::string> LifecycleKind(int event, int detail) {
  auto name = [detail](std::initializer_list<const char*> names) {
    return detail >= 0 && static_cast<size_t>(detail) < names.size()
               ? std::string(names.begin()[detail])
               : absl::StrCat("detail-", detail);
  };
  switch (event) {
    case VIR_DOMAIN_EVENT_DEFINED:
      return {
          detail == VIR_DOMAIN_EVENT_DEFINED_ADDED ? EventKind::kDefined : EventKind::kRedefined,
          name({"added", "updated", "renamed", "from-snapshot"})};
    case VIR_DOMAIN_EVENT_UNDEFINED:
      return {EventKind::kUndefined, name({"removed", "renamed"})};
    case VIR_DOMAIN_EVENT_STARTED:
      return {EventKind::kStarted,
              name({"booted", "migrated", "restored", "from-snapshot", "wakeup"})};
    case VIR_DOMAIN_EVENT_SUSPENDED:
      return {EventKind::kSuspended,
              name({"paused", "migrated", "ioerror", "watchdog", "restored", "from-snapshot",
                    "api-error", "postcopy", "postcopy-failed"})};
    case VIR_DOMAIN_EVENT_RESUMED:
      return {EventKind::kResumed,
              name({"unpaused", "migrated", "from-snapshot", "postcopy", "postcopy-failed"})};
    case VIR_DOMAIN_EVENT_STOPPED:
      return {EventKind::kStopped, name({"shutdown", "destroyed", "crashed", "migrated", "saved",
                                         "failed", "from-snapshot"})};
    case VIR_DOMAIN_EVENT_SHUTDOWN:
      return {EventKind::kOtherLifecycle, absl::StrCat("shutdown-", detail)};
    case VIR_DOMAIN_EVENT_PMSUSPENDED:
      return {EventKind::kOtherLifecycle, absl::StrCat("pmsuspended-", detail)};
    case VIR_DOMAIN_EVENT_CRASHED:
      return {EventKind::kOtherLifecycle, absl::StrCat("crashed-", detail)};
    default:
      return {EventKind::kOtherLifecycle, absl::StrCat("event-", event, "-", detail)};
  }
}

int OnLifecycle(virConnectPtr, virDomainPtr domain, int event, int detail, void* opaque) {
  auto [kind, name] = LifecycleKind(event, detail);
  StateOf(opaque).Deliver(EventFor(domain, kind, std::move(name)));
  return 0;
}
void OnDeviceAdded(virConnectPtr, virDomainPtr domain, const char* alias, void* opaque) {
  StateOf(opaque).Deliver(EventFor(domain, EventKind::kDeviceAdded, Text(alias)));
}
void OnDeviceRemoved(virConnectPtr, virDomainPtr domain, const char* alias, void* opaque) {
  StateOf(opaque).Deliver(EventFor(domain, EventKind::kDeviceRemoved, Text(alias)));
}
void OnMetadataChange(virConnectPtr, virDomainPtr domain, int type, const char* nsuri,
                      void* opaque) {
  StateOf(opaque).Deliver(EventFor(domain, EventKind::kModified,
                                   absl::StrCat("metadata-", type, nsuri ? " " : "", Text(nsuri))));
}
void OnDiskChange(virConnectPtr, virDomainPtr domain, const char* old_path, const char* new_path,
                  const char* alias, int reason, void* opaque) {
  StateOf(opaque).Deliver(EventFor(domain, EventKind::kModified,
                                   absl::StrCat("disk-change ", Text(alias), " ", Text(old_path),
                                                " -> ", Text(new_path), " (", reason, ")")));
}
void OnTrayChange(virConnectPtr, virDomainPtr domain, const char* alias, int reason, void* opaque) {
  StateOf(opaque).Deliver(EventFor(domain, EventKind::kModified,
                                   absl::StrCat("tray-change ", Text(alias), " (", reason, ")")));
}
void OnBlockJob(virConnectPtr, virDomainPtr domain, const char* disk, int type, int status,
                void* opaque) {
  // Only a finished job can have changed the disk's chain (commit, pivot, pull).
  if (status != VIR_DOMAIN_BLOCK_JOB_COMPLETED) return;
  StateOf(opaque).Deliver(EventFor(domain, EventKind::kModified,
                                   absl::StrCat("block-job ", Text(disk), " type ", type)));
}
void OnClose(virConnectPtr, int reason, void* opaque) {
  const char* names[] = {"error", "eof", "keepalive", "client"};
  HypervisorEvent event;
  event.kind = EventKind::kConnectionClosed;
  event.detail = reason >= 0 && reason < 4 ? names[reason] : absl::StrCat("reason-", reason);
  event.time_unix_ms = NowUnixMs();
  StateOf(opaque).Deliver(std::move(event));
}

}  // namespace

void LibvirtHypervisor::ConnectionCloser::operator()(_virConnect* connection) const {
  virConnectClose(connection);
}

LibvirtHypervisor::LibvirtHypervisor(ConnectionPtr connection, std::string uri)
    : connection_(std::move(connection)), uri_(std::move(uri)) {}

LibvirtHypervisor::~LibvirtHypervisor() {
  UnsubscribeEvents();
  connection_.reset();
  EventLoopThread::Get().Release();
}

void LibvirtHypervisor::UnsubscribeEvents() {
  if (!events_) return;
  for (int id : callback_ids_) (void)virConnectDomainEventDeregisterAny(connection_.get(), id);
  callback_ids_.clear();
  if (close_callback_registered_) {
    (void)virConnectUnregisterCloseCallback(connection_.get(), OnClose);
    close_callback_registered_ = false;
    close_box_.reset();
  }
  // A callback already running finishes before this returns; later ones find no sink.
  std::lock_guard lock(events_->mutex);
  events_->sink = nullptr;
}

absl::Status LibvirtHypervisor::SubscribeEvents(EventSink sink) {
  if (events_) {
    std::lock_guard lock(events_->mutex);
    events_->sink = std::move(sink);
    return absl::OkStatus();
  }
  events_ = std::make_shared<EventState>();
  events_->sink = std::move(sink);
  struct Registration {
    int id;
    virConnectDomainEventGenericCallback callback;
    bool required;
  };
  const Registration registrations[] = {
      {VIR_DOMAIN_EVENT_ID_LIFECYCLE, VIR_DOMAIN_EVENT_CALLBACK(OnLifecycle), true},
      {VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, VIR_DOMAIN_EVENT_CALLBACK(OnDeviceAdded), false},
      {VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, VIR_DOMAIN_EVENT_CALLBACK(OnDeviceRemoved), false},
      {VIR_DOMAIN_EVENT_ID_METADATA_CHANGE, VIR_DOMAIN_EVENT_CALLBACK(OnMetadataChange), false},
      {VIR_DOMAIN_EVENT_ID_DISK_CHANGE, VIR_DOMAIN_EVENT_CALLBACK(OnDiskChange), false},
      {VIR_DOMAIN_EVENT_ID_TRAY_CHANGE, VIR_DOMAIN_EVENT_CALLBACK(OnTrayChange), false},
      {VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2, VIR_DOMAIN_EVENT_CALLBACK(OnBlockJob), false},
  };
  for (const Registration& r : registrations) {
    auto* box = new EventStatePtr(events_);
    const int id = virConnectDomainEventRegisterAny(connection_.get(), nullptr, r.id, r.callback,
                                                    box, FreeStateBox);
    if (id < 0) {
      delete box;
      if (!r.required) continue;
      absl::Status error =
          LibvirtError(absl::StrCat("cannot subscribe to the events of hypervisor '", uri_, "'"));
      UnsubscribeEvents();
      events_.reset();
      return absl::UnavailableError(error.message());
    }
    callback_ids_.push_back(id);
  }
  // Owned by this object, no free callback: a driver without close callbacks (the test
  // driver) accepts the registration and never frees it; unregistering is synchronous.
  auto close_box = std::make_shared<EventStatePtr>(events_);
  if (virConnectRegisterCloseCallback(connection_.get(), OnClose, close_box.get(), nullptr) == 0) {
    close_callback_registered_ = true;
    close_box_ = std::move(close_box);
  }  // else: events still flow; a closed connection shows as failing calls
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<LibvirtHypervisor>> LibvirtHypervisor::Open(const std::string& uri) {
  InitLibvirtOnce();
  EventLoopThread::Get().Acquire();  // before the connection exists; released by the destructor
  ConnectionPtr connection(virConnectOpen(uri.empty() ? nullptr : uri.c_str()));
  if (!connection) {
    std::string message = LastLibvirtMessage();
    EventLoopThread::Get().Release();
    return absl::UnavailableError(
        absl::StrCat("cannot connect to hypervisor '", uri, "': ", message));
  }
  CString actual_uri(virConnectGetURI(connection.get()));
  return std::unique_ptr<LibvirtHypervisor>(
      new LibvirtHypervisor(std::move(connection), actual_uri ? actual_uri.get() : uri));
}

absl::StatusOr<HostInfo> LibvirtHypervisor::GetHostInfo() {
  HostInfo info;
  info.uri = uri_;
  CString hostname(virConnectGetHostname(connection_.get()));
  if (!hostname) {
    return LibvirtError(absl::StrCat("cannot read the host name of hypervisor '", uri_, "'"));
  }
  info.hostname = hostname.get();
  const char* type = virConnectGetType(connection_.get());  // static string, not to be freed
  if (type == nullptr) {
    return LibvirtError(absl::StrCat("cannot read the type of hypervisor '", uri_, "'"));
  }
  info.hypervisor_type = type;
  unsigned long version = 0;
  if (virConnectGetLibVersion(connection_.get(), &version) < 0) {
    return LibvirtError(absl::StrCat("cannot read the libvirt version of hypervisor '", uri_, "'"));
  }
  info.version = absl::StrCat(version / 1000000, ".", version / 1000 % 1000, ".", version % 1000);
  return info;
}

absl::StatusOr<std::vector<Domain>> LibvirtHypervisor::ListDomains(const ListOptions& options) {
  // (domain, the name or UUID it was asked for; empty when listing all)
  std::vector<std::pair<DomainPtr, std::string>> handles;
  auto not_found = [this](absl::string_view wanted) {
    return absl::NotFoundError(
        absl::StrCat("VM '", wanted, "' not found on hypervisor '", uri_, "'"));
  };

  if (options.only.empty()) {
    virDomainPtr* list = nullptr;
    const int count = virConnectListAllDomains(connection_.get(), &list, 0);
    if (count < 0) {
      return LibvirtError(absl::StrCat("cannot list the VMs on hypervisor '", uri_, "'"));
    }
    handles.reserve(count);
    for (int i = 0; i < count; ++i) handles.emplace_back(DomainPtr(list[i]), std::string());
    std::free(list);
  } else {
    std::set<std::string> seen_uuids;
    for (const std::string& wanted : options.only) {
      absl::StatusOr<DomainPtr> found = LookUpDomain(connection_.get(), uri_, wanted);
      if (!found.ok()) return found.status();
      DomainPtr domain = *std::move(found);
      char uuid[VIR_UUID_STRING_BUFLEN] = {};
      if (virDomainGetUUIDString(domain.get(), uuid) < 0) {
        return LibvirtError(
            absl::StrCat("cannot read the UUID of VM '", wanted, "' on hypervisor '", uri_, "'"));
      }
      if (seen_uuids.insert(uuid).second) handles.emplace_back(std::move(domain), wanted);
    }
  }

  VolumeResolver volumes(connection_.get());
  std::vector<Domain> domains;
  domains.reserve(handles.size());
  for (const auto& [handle, wanted] : handles) {
    absl::StatusOr<Domain> domain = DescribeDomain(handle.get(), volumes, uri_);
    if (domain.ok()) {
      domains.push_back(*std::move(domain));
    } else if (domain.status().code() != absl::StatusCode::kNotFound) {
      return domain.status();
    } else if (!wanted.empty()) {
      return not_found(wanted);  // it was there a moment ago; now it is gone
    }                            // else: gone while listing everything; it is no longer on the host
  }
  std::sort(domains.begin(), domains.end(), [](const Domain& a, const Domain& b) {
    return a.name != b.name ? a.name < b.name : a.uuid < b.uuid;
  });
  return domains;
}

// ---- VM control ------------------------------------------------------------------------------

namespace {

std::string VmContext(absl::string_view vm, absl::string_view uri) {
  return absl::StrCat("VM '", vm, "' on hypervisor '", uri, "'");
}

// The targets of the VM's disks, in order, from its live definition.
absl::StatusOr<std::vector<std::string>> DiskTargets(virDomainPtr domain,
                                                     absl::string_view context) {
  CString xml(virDomainGetXMLDesc(domain, 0));
  if (!xml) return LibvirtError(absl::StrCat("cannot read the XML of ", context));
  absl::StatusOr<Domain> parsed = ParseDomainXml(xml.get());
  if (!parsed.ok()) {
    return absl::InternalError(
        absl::StrCat("cannot parse the XML of ", context, ": ", parsed.status().message()));
  }
  std::vector<std::string> targets;
  for (const Disk& disk : parsed->disks) targets.push_back(disk.target);
  return targets;
}

// Block job polling: a small overlay is merged in a few milliseconds, a large one takes seconds;
// start at 1 ms and double up to 20 ms, so that the VM is back on its base image soon after.
class PollBackoff {
 public:
  void Sleep() {
    std::this_thread::sleep_for(next_);
    next_ = std::min(next_ * 2, std::chrono::microseconds(20000));
  }

 private:
  std::chrono::microseconds next_{1000};
};

}  // namespace

absl::StatusOr<DomainState> LibvirtHypervisor::GetState(const std::string& vm) {
  STRATA_ASSIGN_OR_RETURN(DomainPtr domain, LookUpDomain(connection_.get(), uri_, vm));
  return StateOfDomain(domain.get(), VmContext(vm, uri_));
}

absl::Status LibvirtHypervisor::Suspend(const std::string& vm) {
  STRATA_ASSIGN_OR_RETURN(DomainPtr domain, LookUpDomain(connection_.get(), uri_, vm));
  const std::string what = absl::StrCat("cannot suspend ", VmContext(vm, uri_));
  // Checked here: QEMU answers success for a paused VM, and the caller must know that it did
  // not pause it.
  STRATA_ASSIGN_OR_RETURN(DomainState state, StateOfDomain(domain.get(), VmContext(vm, uri_)));
  if (state == DomainState::kPaused) {
    return absl::FailedPreconditionError(absl::StrCat(what, ": it is already paused"));
  }
  if (state != DomainState::kRunning && state != DomainState::kBlocked) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, ": it is not running (state: ", std::string(DomainStateName(state)), ")"));
  }
  if (virDomainSuspend(domain.get()) < 0) return LibvirtError(what);
  return absl::OkStatus();
}

absl::Status LibvirtHypervisor::Resume(const std::string& vm) {
  STRATA_ASSIGN_OR_RETURN(DomainPtr domain, LookUpDomain(connection_.get(), uri_, vm));
  const std::string what = absl::StrCat("cannot resume ", VmContext(vm, uri_));
  STRATA_ASSIGN_OR_RETURN(DomainState state, StateOfDomain(domain.get(), VmContext(vm, uri_)));
  if (state != DomainState::kPaused) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, ": it is not paused (state: ", std::string(DomainStateName(state)), ")"));
  }
  if (virDomainResume(domain.get()) < 0) return LibvirtError(what);
  return absl::OkStatus();
}

absl::Status LibvirtHypervisor::FreezeFilesystems(const std::string& vm) {
  STRATA_ASSIGN_OR_RETURN(DomainPtr domain, LookUpDomain(connection_.get(), uri_, vm));
  if (virDomainFSFreeze(domain.get(), nullptr, 0, 0) < 0) {
    return LibvirtError(absl::StrCat("cannot freeze the file systems of ", VmContext(vm, uri_)));
  }
  return absl::OkStatus();
}

absl::Status LibvirtHypervisor::ThawFilesystems(const std::string& vm) {
  STRATA_ASSIGN_OR_RETURN(DomainPtr domain, LookUpDomain(connection_.get(), uri_, vm));
  if (virDomainFSThaw(domain.get(), nullptr, 0, 0) < 0) {
    return LibvirtError(absl::StrCat("cannot thaw the file systems of ", VmContext(vm, uri_)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> LibvirtHypervisor::GetSavedXml(const std::string& vm) {
  STRATA_ASSIGN_OR_RETURN(DomainPtr domain, LookUpDomain(connection_.get(), uri_, vm));
  CString xml(virDomainGetXMLDesc(domain.get(), VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE));
  if (!xml) {
    return LibvirtError(absl::StrCat("cannot read the saved XML of ", VmContext(vm, uri_)));
  }
  return std::string(xml.get());
}

absl::StatusOr<VmSnapshot> LibvirtHypervisor::CreateVmSnapshot(const std::string& vm,
                                                               const VmSnapshotRequest& request) {
  STRATA_ASSIGN_OR_RETURN(DomainPtr domain, LookUpDomain(connection_.get(), uri_, vm));
  const std::string context = VmContext(vm, uri_);
  const std::string what = absl::StrCat("cannot snapshot ", context);
  std::vector<std::string> targets;
  unsigned int flags = 0;
  if (request.disk_only) {
    if (request.overlays.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": a disk-only snapshot needs at least one overlay"));
    }
    STRATA_ASSIGN_OR_RETURN(targets, DiskTargets(domain.get(), context));
    for (const auto& [target, path] : request.overlays) {
      if (std::find(targets.begin(), targets.end(), target) == targets.end()) {
        return absl::InvalidArgumentError(absl::StrCat(what, ": it has no disk '", target, "'"));
      }
      if (path.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(what, ": the overlay path of disk '", target, "' is empty"));
      }
    }
    flags |= VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY;
    if (request.atomic) flags |= VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC;
  } else if (!request.overlays.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": overlays are only for disk-only snapshots"));
  }
  if (request.quiesce) flags |= VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE;

  const std::string xml = SnapshotXml(request, targets);
  SnapshotPtr snapshot(virDomainSnapshotCreateXML(domain.get(), xml.c_str(), flags));
  if (!snapshot) return LibvirtError(what);

  // It exists now: from here on nothing fails, the caller must learn what to clean up.
  VmSnapshot result;
  const char* name = virDomainSnapshotGetName(snapshot.get());  // owned by `snapshot`
  result.name = name != nullptr ? name : request.name;
  result.external = request.disk_only;
  if (request.disk_only) {
    CString snapshot_xml(virDomainSnapshotGetXMLDesc(snapshot.get(), 0));
    absl::StatusOr<std::vector<std::pair<std::string, std::string>>> recorded =
        snapshot_xml ? ExternalOverlays(snapshot_xml.get())
                     : absl::InternalError("no snapshot XML");
    if (recorded.ok() && !recorded->empty()) {
      result.overlays = *std::move(recorded);
    } else {  // what was asked for, in the order of the VM's disks
      for (const std::string& target : targets) {
        for (const auto& overlay : request.overlays) {
          if (overlay.first == target) result.overlays.push_back(overlay);
        }
      }
    }
  }
  return result;
}

absl::Status LibvirtHypervisor::DeleteVmSnapshot(const std::string& vm,
                                                 const std::string& snapshot_name,
                                                 bool metadata_only) {
  STRATA_ASSIGN_OR_RETURN(DomainPtr domain, LookUpDomain(connection_.get(), uri_, vm));
  SnapshotPtr snapshot(virDomainSnapshotLookupByName(domain.get(), snapshot_name.c_str(), 0));
  if (!snapshot) {
    if (LastErrorIs(VIR_ERR_NO_DOMAIN_SNAPSHOT)) {
      return absl::NotFoundError(absl::StrCat("VM snapshot '", snapshot_name, "' of VM '", vm,
                                              "' not found on hypervisor '", uri_, "'"));
    }
    return LibvirtError(
        absl::StrCat("cannot look up VM snapshot '", snapshot_name, "' of ", VmContext(vm, uri_)));
  }
  const unsigned int flags = metadata_only ? VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY : 0;
  if (virDomainSnapshotDelete(snapshot.get(), flags) < 0) {
    return LibvirtError(
        absl::StrCat("cannot delete VM snapshot '", snapshot_name, "' of ", VmContext(vm, uri_)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> LibvirtHypervisor::ListVmSnapshots(const std::string& vm) {
  STRATA_ASSIGN_OR_RETURN(DomainPtr domain, LookUpDomain(connection_.get(), uri_, vm));
  virDomainSnapshotPtr* list = nullptr;
  const int count = virDomainListAllSnapshots(domain.get(), &list, 0);
  if (count < 0) {
    return LibvirtError(absl::StrCat("cannot list the snapshots of ", VmContext(vm, uri_)));
  }
  std::vector<SnapshotPtr> snapshots;
  snapshots.reserve(count);
  for (int i = 0; i < count; ++i) snapshots.emplace_back(list[i]);
  std::free(list);
  std::vector<std::string> names;
  names.reserve(count);
  for (const SnapshotPtr& snapshot : snapshots) {
    const char* name = virDomainSnapshotGetName(snapshot.get());
    if (name != nullptr) names.emplace_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

absl::Status LibvirtHypervisor::CommitActiveOverlay(const std::string& vm,
                                                    const std::string& target,
                                                    std::chrono::milliseconds timeout) {
  STRATA_ASSIGN_OR_RETURN(DomainPtr domain, LookUpDomain(connection_.get(), uri_, vm));
  const std::string what =
      absl::StrCat("cannot commit disk '", target, "' of ", VmContext(vm, uri_));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // SHALLOW: into the overlay's own backing image only. Without it a NULL base means the bottom
  // of the chain, and a disk that was itself a qcow2 over a base image would be merged, with
  // the overlay, into that (shared) base image.
  if (virDomainBlockCommit(domain.get(), target.c_str(), nullptr, nullptr, 0,
                           VIR_DOMAIN_BLOCK_COMMIT_ACTIVE | VIR_DOMAIN_BLOCK_COMMIT_SHALLOW) < 0) {
    return LibvirtError(what);
  }
  PollBackoff backoff;
  auto abort_job = [&]() -> absl::Status {
    // Synchronous: once it returns, the job is gone and the VM still uses the overlay.
    if (virDomainBlockJobAbort(domain.get(), target.c_str(), 0) < 0) {
      return absl::DeadlineExceededError(
          absl::StrCat(what, ": the block commit did not finish within ", timeout.count(),
                       " ms, and aborting the job failed: ", LastLibvirtMessage()));
    }
    return absl::DeadlineExceededError(
        absl::StrCat(what, ": the block commit did not finish within ", timeout.count(),
                     " ms; the job was aborted and the VM still writes to the overlay"));
  };

  // 1. Until the job is ready: QEMU's driver reports cur == end only then.
  while (true) {
    virDomainBlockJobInfo info{};
    const int found = virDomainGetBlockJobInfo(domain.get(), target.c_str(), &info, 0);
    if (found < 0) {
      absl::Status error = LibvirtError(what);
      (void)virDomainBlockJobAbort(domain.get(), target.c_str(), 0);
      return error;
    }
    if (found == 0) {
      return absl::InternalError(
          absl::StrCat(what, ": the block commit job ended before it was ready to pivot"));
    }
    if (info.end > 0 && info.cur == info.end) break;
    if (std::chrono::steady_clock::now() >= deadline) return abort_job();
    backoff.Sleep();
  }
  // 2. Pivot. libvirt may not yet have processed QEMU's "ready" event that query-block-jobs
  // already shows: it then answers BLOCK_COPY_ACTIVE ("not ready for pivot yet"); try again.
  while (virDomainBlockJobAbort(domain.get(), target.c_str(), VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT) <
         0) {
    if (!LastErrorIs(VIR_ERR_BLOCK_COPY_ACTIVE)) {
      absl::Status error = LibvirtError(what);
      (void)virDomainBlockJobAbort(domain.get(), target.c_str(), 0);
      return error;
    }
    if (std::chrono::steady_clock::now() >= deadline) return abort_job();
    backoff.Sleep();
  }
  // 3. Until no job remains on the disk (the pivot above is synchronous; this is a guard).
  while (true) {
    virDomainBlockJobInfo info{};
    const int found = virDomainGetBlockJobInfo(domain.get(), target.c_str(), &info, 0);
    if (found < 0) return LibvirtError(what);
    if (found == 0) return absl::OkStatus();
    if (std::chrono::steady_clock::now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat(what, ": the pivot was accepted but the block job was still there after ",
                       timeout.count(), " ms"));
    }
    backoff.Sleep();
  }
}

absl::Status LibvirtHypervisor::SetSavedDiskSource(const std::string& vm,
                                                   const DiskSourceChange& change) {
  STRATA_ASSIGN_OR_RETURN(DomainPtr domain, LookUpDomain(connection_.get(), uri_, vm));
  const std::string context = VmContext(vm, uri_);
  const std::string what =
      absl::StrCat("cannot change the source of disk '", change.target, "' of ", context);
  if (change.path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": the new source is empty"));
  }
  // A running VM's saved definition must keep naming the image QEMU writes to: its next boot
  // would otherwise skip those writes.
  STRATA_ASSIGN_OR_RETURN(DomainState state, StateOfDomain(domain.get(), context));
  if (state != DomainState::kShutoff) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, ": it is not shut off (state: ", std::string(DomainStateName(state)), ")"));
  }
  CString saved(virDomainGetXMLDesc(domain.get(), VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE));
  if (!saved) return LibvirtError(absl::StrCat("cannot read the saved XML of ", context));
  pugi::xml_document document;
  if (pugi::xml_parse_result parsed = document.load_string(saved.get()); !parsed) {
    return absl::InternalError(
        absl::StrCat(what, ": its saved XML does not parse: ", parsed.description()));
  }
  pugi::xml_node disk;
  for (pugi::xml_node candidate : document.child("domain").child("devices").children("disk")) {
    if (change.target == candidate.child("target").attribute("dev").as_string()) disk = candidate;
  }
  if (!disk) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": it has no disk '", change.target, "'"));
  }
  pugi::xml_node source = disk.child("source");
  const std::string type = disk.attribute("type") ? disk.attribute("type").as_string() : "file";
  const std::string current = source.attribute("file").as_string();
  if (type != "file" || current != change.expected_path) {
    return absl::FailedPreconditionError(absl::StrCat(what, ": its saved source is '", current,
                                                      "', not '", change.expected_path, "'"));
  }
  source.attribute("file").set_value(change.path.c_str());
  if (!change.format.empty()) {
    pugi::xml_node driver = disk.child("driver");
    if (!driver) driver = disk.prepend_child("driver");
    pugi::xml_attribute format = driver.attribute("type");
    if (!format) format = driver.append_attribute("type");
    format.set_value(change.format.c_str());
  }
  // The old source's chain; the new one is probed when the VM starts.
  while (disk.remove_child("backingStore")) {
  }
  std::ostringstream edited;
  document.save(edited, "", pugi::format_raw | pugi::format_no_declaration);
  DomainPtr defined(virDomainDefineXML(connection_.get(), edited.str().c_str()));
  if (!defined) return LibvirtError(what);
  // libvirt cannot define only if the VM is still off: check again, and put the old definition
  // back if it was started meanwhile.
  STRATA_ASSIGN_OR_RETURN(DomainState after, StateOfDomain(defined.get(), context));
  if (after == DomainState::kShutoff) return absl::OkStatus();
  DomainPtr restored(virDomainDefineXML(connection_.get(), saved.get()));
  if (!restored) {
    return LibvirtError(absl::StrCat(
        what, ": the VM was started meanwhile, and putting its saved definition back failed"));
  }
  return absl::AbortedError(
      absl::StrCat(what, ": the VM was started meanwhile; its saved definition was put back"));
}

absl::StatusOr<std::string> LibvirtHypervisor::DefineXml(const std::string& xml) {
  DomainPtr domain(virDomainDefineXML(connection_.get(), xml.c_str()));
  if (!domain) return LibvirtError(absl::StrCat("cannot define a VM on hypervisor '", uri_, "'"));
  char uuid[VIR_UUID_STRING_BUFLEN] = {};
  if (virDomainGetUUIDString(domain.get(), uuid) < 0) {
    return LibvirtError(
        absl::StrCat("cannot read the UUID of the VM just defined on hypervisor '", uri_, "'"));
  }
  return std::string(uuid);
}

absl::Status LibvirtHypervisor::Start(const std::string& vm) {
  STRATA_ASSIGN_OR_RETURN(DomainPtr domain, LookUpDomain(connection_.get(), uri_, vm));
  if (virDomainCreate(domain.get()) < 0) {
    return LibvirtError(absl::StrCat("cannot start ", VmContext(vm, uri_)));
  }
  return absl::OkStatus();
}

absl::Status LibvirtHypervisor::Destroy(const std::string& vm) {
  STRATA_ASSIGN_OR_RETURN(DomainPtr domain, LookUpDomain(connection_.get(), uri_, vm));
  if (virDomainDestroy(domain.get()) < 0) {
    return LibvirtError(absl::StrCat("cannot destroy ", VmContext(vm, uri_)));
  }
  return absl::OkStatus();
}

absl::Status LibvirtHypervisor::Undefine(const std::string& vm) {
  STRATA_ASSIGN_OR_RETURN(DomainPtr domain, LookUpDomain(connection_.get(), uri_, vm));
  // Most complete first; a driver rejects flags it does not know with INVALID_ARG
  // ("unsupported flags (0x10) in function testDomainUndefineFlags") before doing anything.
  const unsigned int attempts[] = {
      VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
          VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | VIR_DOMAIN_UNDEFINE_NVRAM,
      VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA,
      0,
  };
  for (unsigned int flags : attempts) {
    if (virDomainUndefineFlags(domain.get(), flags) == 0) return absl::OkStatus();
    const bool rejected_flags = LastErrorIs(VIR_ERR_INVALID_ARG) || LastErrorIs(VIR_ERR_NO_SUPPORT);
    if (!rejected_flags || flags == 0) break;
  }
  return LibvirtError(absl::StrCat("cannot undefine ", VmContext(vm, uri_)));
}

}  // namespace strata::hypervisor
