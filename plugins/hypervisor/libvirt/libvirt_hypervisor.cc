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
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

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
struct MallocFree {  // strings and arrays libvirt allocates for the caller
  void operator()(void* memory) const { std::free(memory); }
};
using DomainPtr = std::unique_ptr<virDomain, DomainFree>;
using PoolPtr = std::unique_ptr<virStoragePool, PoolFree>;
using VolumePtr = std::unique_ptr<virStorageVol, VolumeFree>;
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
      return absl::StatusCode::kNotFound;
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
      // As virsh: a UUID first, then a name. A string that is no UUID fails with INVALID_ARG.
      DomainPtr domain(virDomainLookupByUUIDString(connection_.get(), wanted.c_str()));
      if (!domain && !LastErrorIs(VIR_ERR_NO_DOMAIN) && !LastErrorIs(VIR_ERR_INVALID_ARG)) {
        return LibvirtError(
            absl::StrCat("cannot look up VM '", wanted, "' on hypervisor '", uri_, "'"));
      }
      if (!domain) domain.reset(virDomainLookupByName(connection_.get(), wanted.c_str()));
      if (!domain) {
        if (LastErrorIs(VIR_ERR_NO_DOMAIN) || LastErrorIs(VIR_ERR_INVALID_ARG)) {
          return not_found(wanted);
        }
        return LibvirtError(
            absl::StrCat("cannot look up VM '", wanted, "' on hypervisor '", uri_, "'"));
      }
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

}  // namespace strata::hypervisor
