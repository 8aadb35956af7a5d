// The backup engine on real QEMU VMs through the system libvirtd (qemu:///system) and the
// dlopen'ed libvirt and dir plug-ins: external disk-only snapshots (overlays) around the storage
// snapshot, in crash, pause and quiesce mode, failures injected between the steps, a crash of
// the agent while VMs run on overlays, VMs shut off while on their overlays (committed offline),
// and restores verified with `qemu-img compare`.
//
// Each test defines its own VMs (64 MiB, no OS, TCG, qcow2 disks made with qemu-img in a temp
// dir of mode 0755), named strata-qbt-<pid>-<n>, and destroys and undefines them however the
// test ends. When qemu:///system does not answer (libvirtd not running: scripts/qemu-env.sh
// start), every test skips, saying so.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "nlohmann/json.hpp"
#include "strata/agent/backup_engine.h"
#include "strata/agent/config.h"
#include "strata/agent/host_services.h"
#include "strata/agent/plugin_host.h"
#include "strata/backup/manifest.h"
#include "strata/util/process.h"
#include "vm_overlay.h"

namespace strata::agent {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Runs `command` with /bin/sh; its exit code and output (stdout and stderr).
std::pair<int, std::string> Sh(const std::string& command) {
  absl::StatusOr<util::ProcessResult> r = util::RunProcess({"/bin/sh", "-c", command + " 2>&1"});
  if (!r.ok()) return {-1, std::string(r.status().message())};
  return {r->exit_code, r->output};
}

bool QemuAnswers(std::string* why) {
  if (!fs::exists("/usr/bin/qemu-system-x86_64") || !fs::exists("/usr/bin/qemu-img")) {
    *why = "qemu-system-x86_64 or qemu-img is not installed";
    return false;
  }
  auto [code, out] = Sh("timeout 10 virsh -q -c qemu:///system version");
  if (code != 0) {
    *why = "qemu:///system does not answer (start libvirtd: scripts/qemu-env.sh start): " + out;
    return false;
  }
  return true;
}

std::string VmXml(const std::string& name, const std::vector<std::string>& disks,
                  bool guest_agent_channel) {
  std::string xml = "<domain type='qemu'><name>" + name +
                    "</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
                    "<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>"
                    "<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>";
  const char* targets[] = {"vda", "vdb", "vdc"};
  for (size_t i = 0; i < disks.size(); ++i) {
    xml += std::string("<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>") +
           "<source file='" + disks[i] + "'/><target dev='" + targets[i] +
           "' bus='virtio'/></disk>";
  }
  if (guest_agent_channel) {
    xml += "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>";
  }
  xml += "<memballoon model='none'/></devices></domain>";
  return xml;
}

class QemuBackupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!QemuAnswers(&why)) GTEST_SKIP() << why;
    std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(test.begin(), test.end(), '/', '_');  // parameterised: "Name/param"
    dir_ = fs::temp_directory_path() / ("strata-qbt-" + std::to_string(getpid()) + "-" + test);
    fs::remove_all(dir_);
    for (const char* sub : {"", "/gold", "/silver", "/state"}) {
      fs::create_directories(dir_.string() + sub);
      // QEMU runs as libvirt-qemu: it must traverse to the images (libvirt chowns files only).
      fs::permissions(dir_.string() + sub, fs::perms::owner_all | fs::perms::group_read |
                                               fs::perms::group_exec | fs::perms::others_read |
                                               fs::perms::others_exec);
    }
    fs::permissions(fs::temp_directory_path(), fs::perms::others_exec, fs::perm_options::add);
    ASSERT_TRUE(plugins_.LoadDirectory(STRATA_PLUGIN_DIR).ok());
    AgentConfig config;
    config.host_id = "qemu-test";
    config.connect = "qemu:///system";
    config.state_dir = (dir_ / "state").string();
    config.dir_volumes = {{"gold", Gold()}, {"silver", (dir_ / "silver").string()}};
    config.server.clear();
    config_ = config;
    services_ = std::make_unique<HostServices>(plugins_, config);
    engine_ = NewEngine();
  }

  void TearDown() override {
    engine_.reset();
    services_.reset();
    for (const std::string& vm : vms_) {
      Sh("virsh -q -c qemu:///system destroy '" + vm + "' >/dev/null");
      Sh("virsh -q -c qemu:///system undefine '" + vm +
         "' --snapshots-metadata --checkpoints-metadata >/dev/null");
    }
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  std::unique_ptr<BackupEngine> NewEngine() {
    return std::make_unique<BackupEngine>(*services_, [this](const std::string& step) {
      return faults_.count(step) ? absl::InternalError("injected at " + step) : absl::OkStatus();
    });
  }

  std::string Gold() const { return (dir_ / "gold").string(); }
  std::string Silver() const { return (dir_ / "silver").string(); }

  // A qcow2 image of 64 MiB holding `pattern` in its first MiB (0: empty).
  std::string Image(const std::string& path, int pattern, const std::string& backing = "") {
    std::string cmd = "qemu-img create -q -f qcow2 ";
    if (!backing.empty()) cmd += "-F qcow2 -b '" + backing + "' ";
    auto [code, out] = Sh(cmd + "'" + path + "' 64M");
    EXPECT_EQ(code, 0) << out;
    if (pattern != 0) {
      char io[64];
      std::snprintf(io, sizeof(io), "write -P 0x%02x 0 1M", pattern);
      auto [c, o] = Sh("qemu-io -f qcow2 -c '" + std::string(io) + "' '" + path + "' >/dev/null");
      EXPECT_EQ(c, 0) << o;
    }
    return path;
  }

  // Defines and starts a VM on `disks`; returns its name.
  std::string StartVm(const std::vector<std::string>& disks, bool channel = false) {
    const std::string name =
        "strata-qbt-" + std::to_string(getpid()) + "-" + std::to_string(vms_.size());
    vms_.push_back(name);
    absl::Status s = services_->WithHypervisor([&](hypervisor::Hypervisor& h) -> absl::Status {
      absl::StatusOr<std::string> uuid = h.DefineXml(VmXml(name, disks, channel));
      if (!uuid.ok()) return uuid.status();
      return h.Start(name);
    });
    EXPECT_TRUE(s.ok()) << s;
    return name;
  }

  BackupParams Params(std::vector<std::string> vms, ConsistencyMode mode,
                      const std::string& name = "b1") {
    BackupParams p;
    p.backup_id = "id-" + name;
    p.name = name;
    p.vms = std::move(vms);
    p.consistency = mode;
    p.requester = "test";
    return p;
  }

  hypervisor::Domain Live(const std::string& vm) {
    hypervisor::Domain domain;
    EXPECT_TRUE(services_
                    ->WithHypervisor([&](hypervisor::Hypervisor& h) -> absl::Status {
                      hypervisor::ListOptions o;
                      o.only = {vm};
                      absl::StatusOr<std::vector<hypervisor::Domain>> l = h.ListDomains(o);
                      if (!l.ok()) return l.status();
                      domain = (*l)[0];
                      return absl::OkStatus();
                    })
                    .ok());
    return domain;
  }
  // The live chain of each disk: "vda=/a/top.qcow2<-/a/base.qcow2".
  std::vector<std::string> Chains(const std::string& vm) {
    std::vector<std::string> chains;
    for (const hypervisor::Disk& d : Live(vm).disks) {
      std::string c = d.target + "=" + d.source.path;
      for (const hypervisor::DiskSource& b : d.backing_chain) {
        if (!b.path.empty()) c += "<-" + b.path;
      }
      chains.push_back(c);
    }
    return chains;
  }
  std::string State(const std::string& vm) {
    return std::string(hypervisor::DomainStateName(Live(vm).state));
  }
  std::vector<std::string> VmSnapshots(const std::string& vm) {
    auto [code, out] = Sh("virsh -q -c qemu:///system snapshot-list --name '" + vm + "'");
    EXPECT_EQ(code, 0) << out;
    std::vector<std::string> names;
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) names.push_back(line);
    }
    return names;
  }
  // Every file whose name says it is an overlay, anywhere under the test dir.
  std::vector<std::string> Overlays() {
    std::vector<std::string> found;
    for (const auto& e : fs::recursive_directory_iterator(dir_)) {
      if (e.path().filename().string().find(".overlay") != std::string::npos) {
        found.push_back(e.path().string());
      }
    }
    return found;
  }
  bool GuestWrite(const std::string& vm, const std::string& target, int pattern,
                  const std::string& where = "0 1M") {
    char cmd[512];
    std::snprintf(cmd, sizeof(cmd),
                  "virsh -q -c qemu:///system qemu-monitor-command '%s' --hmp "
                  "'qemu-io -d /machine/peripheral/virtio-disk%d/virtio-backend "
                  "\"write -P 0x%02x %s\"'",
                  vm.c_str(), target == "vda" ? 0 : 1, pattern, where.c_str());
    auto [code, out] = Sh(cmd);
    // HMP answers errors on stdout with exit code 0.
    return code == 0 && out.find("rror") == std::string::npos;
  }
  // `qemu-io -r` read check of `pattern` in the first MiB of an image, or at `where`
  // ("20M 3M"); -U: the VM may hold it.
  bool Holds(const std::string& image, int pattern, const std::string& where = "0 1M") {
    char io[64];
    std::snprintf(io, sizeof(io), "read -P 0x%02x %s", pattern, where.c_str());
    auto [code, out] = Sh("qemu-io -r -U -f qcow2 -c '" + std::string(io) + "' '" + image + "'");
    return code == 0 && out.find("Pattern verification failed") == std::string::npos;
  }
  // Every VM's end state after a backup: running, on `chains`, no snapshot record, no overlay.
  void ExpectBackOnOriginalChain(const std::string& vm, const std::vector<std::string>& chains) {
    EXPECT_EQ(State(vm), "running") << vm;
    EXPECT_EQ(Chains(vm), chains) << vm;
    EXPECT_THAT(VmSnapshots(vm), IsEmpty()) << vm;
    EXPECT_THAT(Overlays(), IsEmpty());
  }

  fs::path dir_;
  AgentConfig config_;
  PluginHost plugins_;
  std::unique_ptr<HostServices> services_;
  std::unique_ptr<BackupEngine> engine_;
  std::set<std::string> faults_;
  std::vector<std::string> vms_;
};

const backup::ManifestVm& VmOf(const backup::BackupManifest& m, const std::string& name) {
  for (const backup::ManifestVm& vm : m.vms) {
    if (vm.name == name) return vm;
  }
  ADD_FAILURE() << "no VM " << name << " in the manifest";
  static const backup::ManifestVm kNone;
  return kNone;
}

TEST_F(QemuBackupTest, CrashBackupSnapshotsTheFrozenBaseUnderAnOverlayAndCommitsBack) {
  const std::string disk = Image(Gold() + "/web.qcow2", 0x11);
  const std::string vm = StartVm({disk});
  std::vector<std::string> steps;
  std::vector<std::string> chain_during;
  absl::StatusOr<BackupOutcome> out =
      engine_->Run(Params({vm}, ConsistencyMode::kCrash), [&](const BackupStep& s) {
        steps.push_back(s.step);
        // While the storage snapshot is taken, the VM writes to its overlay; this write must
        // not be in the backup, and must not be lost either.
        if (s.step == "storage-snapshot") {
          chain_during = Chains(vm);
          EXPECT_TRUE(GuestWrite(vm, "vda", 0x22));
        }
      });
  ASSERT_TRUE(out.ok()) << out.status();
  const backup::ManifestVm& m = VmOf(out->manifest, vm);
  ASSERT_TRUE(m.ok) << m.error;
  EXPECT_EQ(out->manifest.state, "succeeded");
  EXPECT_EQ(m.consistency_achieved, "crash");
  EXPECT_EQ(m.vm_snapshot_kind, "external");
  EXPECT_EQ(m.vm_snapshot, "");  // its record is gone: nothing to restore from libvirt
  ASSERT_EQ(m.disks.size(), 1u);
  EXPECT_EQ(m.disks[0].source_path, disk);  // the base, never the overlay
  EXPECT_THAT(m.saved_xml, HasSubstr("<source file='" + disk + "'/>"));
  EXPECT_THAT(m.saved_xml, Not(HasSubstr("overlay")));
  EXPECT_THAT(chain_during, ElementsAre("vda=" + overlay::OverlayPath(disk, "b1") + "<-" + disk));
  EXPECT_THAT(steps,
              ::testing::IsSupersetOf({"overlay", "storage-snapshot", "commit", "committed"}));
  ExpectBackOnOriginalChain(vm, {"vda=" + disk});
  // The backup holds the base as it was; the live disk has the write made meanwhile.
  EXPECT_TRUE(Holds(m.disks[0].snapshot_path, 0x11));
  EXPECT_TRUE(Holds(disk, 0x22));
  auto [code, text] = Sh("qemu-img check -q '" + m.disks[0].snapshot_path + "'");
  EXPECT_EQ(code, 0) << text;
}

TEST_F(QemuBackupTest, PauseModeSuspendsOnlyWhileTheOverlayIsMade) {
  const std::string disk = Image(Gold() + "/db.qcow2", 0x11);
  const std::string vm = StartVm({disk});
  std::map<std::string, std::string> state_at;
  absl::StatusOr<BackupOutcome> out =
      engine_->Run(Params({vm}, ConsistencyMode::kPause), [&](const BackupStep& s) {
        if (!state_at.count(s.step)) state_at[s.step] = State(vm);
      });
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_TRUE(VmOf(out->manifest, vm).ok) << VmOf(out->manifest, vm).error;
  EXPECT_EQ(VmOf(out->manifest, vm).consistency_achieved, "pause");
  EXPECT_EQ(state_at["overlay"], "paused");
  EXPECT_EQ(state_at["storage-snapshot"], "running");  // resumed once the base was frozen
  ExpectBackOnOriginalChain(vm, {"vda=" + disk});
}

TEST_F(QemuBackupTest, ADiskOverABaseImageIsCommittedIntoItsOwnTopNotIntoTheBase) {
  const std::string base = Image(Gold() + "/golden.qcow2", 0x11);
  const std::string top = Image(Gold() + "/vm1.qcow2", 0, base);
  ASSERT_EQ(Sh("cp '" + base + "' '" + base + ".before'").first, 0);
  const std::string vm = StartVm({top});
  ASSERT_TRUE(GuestWrite(vm, "vda", 0x33, "2M 1M"));
  absl::StatusOr<BackupOutcome> out =
      engine_->Run(Params({vm}, ConsistencyMode::kCrash), [&](const BackupStep& s) {
        if (s.step == "storage-snapshot") {
          EXPECT_TRUE(GuestWrite(vm, "vda", 0x44, "4M 1M"));
        }
      });
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_TRUE(VmOf(out->manifest, vm).ok) << VmOf(out->manifest, vm).error;
  ExpectBackOnOriginalChain(vm, {"vda=" + top + "<-" + base});
  // The shared base image is untouched; both writes are in the VM's own image.
  auto [code, text] = Sh("qemu-img compare -U '" + base + ".before' '" + base + "'");
  EXPECT_EQ(code, 0) << text;
  EXPECT_EQ(Sh("qemu-io -r -U -f qcow2 -c 'read -P 0x44 4M 1M' '" + top + "'")
                .second.find("verification failed"),
            std::string::npos);
  EXPECT_EQ(Sh("qemu-io -r -U -f qcow2 -c 'read -P 0x33 2M 1M' '" + top + "'")
                .second.find("verification failed"),
            std::string::npos);
}

TEST_F(QemuBackupTest, ManyVmsOnTwoVolumesAreEachCommittedWhenTheirVolumesAreDone) {
  std::vector<std::string> names;
  std::map<std::string, std::vector<std::string>> chains;
  for (int i = 0; i < 3; ++i) {
    const std::string d = Image(Gold() + "/g" + std::to_string(i) + ".qcow2", 0x10 + i);
    names.push_back(StartVm({d}));
    chains[names.back()] = {"vda=" + d};
  }
  const std::string a = Image(Gold() + "/two-a.qcow2", 0x20);
  const std::string b = Image(Silver() + "/two-b.qcow2", 0x21);
  names.push_back(StartVm({a, b}));
  chains[names.back()] = {"vda=" + a, "vdb=" + b};
  absl::StatusOr<BackupOutcome> out = engine_->Run(Params(names, ConsistencyMode::kPause), nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->manifest.state, "succeeded");
  EXPECT_EQ(out->manifest.snapshots.size(), 2u);
  for (const std::string& vm : names) {
    EXPECT_TRUE(VmOf(out->manifest, vm).ok) << VmOf(out->manifest, vm).error;
    ExpectBackOnOriginalChain(vm, chains[vm]);
  }
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(Holds(VmOf(out->manifest, names[i]).disks[0].snapshot_path, 0x10 + i));
  }
}

// Crash consistency on a dir volume: the per-VM pipeline. Each VM in turn goes on its overlay,
// its files are added to the volume's one snapshot, and it is committed back before the next
// VM's overlay is made; a base image two VMs share goes into the snapshot once.
TEST_F(QemuBackupTest, PipelineHoldsOneVmAtATimeAndTakesOneSnapshotOfTheVolume) {
  const std::string base = Image(Gold() + "/golden.qcow2", 0x11);
  std::vector<std::string> names, disks;
  std::map<std::string, std::vector<std::string>> chains;
  for (int i = 0; i < 4; ++i) {
    const std::string d = i < 2 ? Image(Gold() + "/p" + std::to_string(i) + ".qcow2", 0, base)
                                : Image(Gold() + "/p" + std::to_string(i) + ".qcow2", 0x20 + i);
    disks.push_back(d);
    names.push_back(StartVm({d}));
    chains[names.back()] = {i < 2 ? "vda=" + d + "<-" + base : "vda=" + d};
  }
  std::vector<std::string> order;                        // "<step>:<vm>" of the per-VM steps
  std::map<std::string, std::vector<std::string>> seen;  // VMs on an overlay at each snapshot
  absl::StatusOr<BackupOutcome> out =
      engine_->Run(Params(names, ConsistencyMode::kCrash), [&](const BackupStep& s) {
        if (s.vm_name.empty()) return;
        if (s.step == "overlay" || s.step == "storage-snapshot" || s.step == "committed") {
          order.push_back(s.step + ":" + s.vm_name);
        }
        if (s.step == "storage-snapshot") {
          for (const std::string& vm : names) {
            if (Chains(vm) != chains[vm]) seen[s.vm_name].push_back(vm);
          }
        }
      });
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->manifest.state, "succeeded");
  std::vector<std::string> expected_order;
  for (const std::string& vm : names) {
    expected_order.insert(expected_order.end(),
                          {"overlay:" + vm, "storage-snapshot:" + vm, "committed:" + vm});
    // While its files were added, only this VM ran on an overlay.
    EXPECT_THAT(seen[vm], ElementsAre(vm));
  }
  EXPECT_EQ(order, expected_order);
  ASSERT_EQ(out->manifest.snapshots.size(), 1u);
  const std::string snap = Gold() + "/.strata-snapshots/b1";
  EXPECT_EQ(out->manifest.snapshots[0].path, snap);
  std::vector<std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(snap)) {
    files.push_back(e.path().filename().string());
  }
  std::sort(files.begin(), files.end());
  EXPECT_THAT(files, ElementsAre("golden.qcow2", "p0.qcow2", "p1.qcow2", "p2.qcow2", "p3.qcow2"));
  for (size_t i = 0; i < names.size(); ++i) {
    const backup::ManifestVm& m = VmOf(out->manifest, names[i]);
    ASSERT_TRUE(m.ok) << m.error;
    EXPECT_EQ(m.vm_snapshot_kind, "external");
    ASSERT_EQ(m.disks.size(), 1u);
    EXPECT_EQ(m.disks[0].source_path, disks[i]);
    EXPECT_EQ(m.disks[0].snapshot_path, snap + "/p" + std::to_string(i) + ".qcow2");
    if (i >= 2) {
      EXPECT_TRUE(Holds(m.disks[0].snapshot_path, 0x20 + static_cast<int>(i)));
    }
    ExpectBackOnOriginalChain(names[i], chains[names[i]]);
  }
  // The copy of an overlaid disk still reads its base from the copy of the base beside it.
  EXPECT_TRUE(Holds(snap + "/golden.qcow2", 0x11));
  absl::StatusOr<backup::BackupManifest> file =
      backup::ReadManifestFile(Gold() + "/.strata-snapshots/b1.manifest.json");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->vms.size(), 4u);
  EXPECT_EQ(file->state, "succeeded");
  EXPECT_FALSE(fs::exists(dir_ / "state/backup-journal/id-b1.json"));
}

// A failure while the third VM's files are added fails that VM only: its files are not in the
// snapshot, it is back on its disk, and the VMs after it are backed up.
TEST_F(QemuBackupTest, PipelineFailureAtTheThirdVmsAppendFailsThatVmOnly) {
  std::vector<std::string> names, disks;
  for (int i = 0; i < 4; ++i) {
    disks.push_back(Image(Gold() + "/a" + std::to_string(i) + ".qcow2", 0x30 + i));
    names.push_back(StartVm({disks.back()}));
  }
  int appends = 0;
  BackupEngine engine(*services_, [&](const std::string& step) {
    // The first VM makes the snapshot; the second and later ones append to it.
    if (step == "storage-snapshot-append:gold" && ++appends == 2) {
      return absl::InternalError("injected at " + step);
    }
    return absl::OkStatus();
  });
  absl::StatusOr<BackupOutcome> out = engine.Run(Params(names, ConsistencyMode::kCrash), nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(appends, 3);
  EXPECT_EQ(out->manifest.state, "partial");
  ASSERT_EQ(out->manifest.snapshots.size(), 1u);
  const std::string snap = Gold() + "/.strata-snapshots/b1";
  for (size_t i = 0; i < names.size(); ++i) {
    const backup::ManifestVm& m = VmOf(out->manifest, names[i]);
    const std::string copy = snap + "/a" + std::to_string(i) + ".qcow2";
    if (i == 2) {
      EXPECT_FALSE(m.ok);
      EXPECT_EQ(m.error,
                "storage snapshot of volume 'gold' failed: injected at "
                "storage-snapshot-append:gold");
      EXPECT_THAT(m.disks, IsEmpty());
      EXPECT_FALSE(fs::exists(copy));
    } else {
      ASSERT_TRUE(m.ok) << names[i] << ": " << m.error;
      EXPECT_TRUE(Holds(copy, 0x30 + static_cast<int>(i)));
    }
    ExpectBackOnOriginalChain(names[i], {"vda=" + disks[i]});
  }
  EXPECT_FALSE(fs::exists(dir_ / "state/backup-journal/id-b1.json"));
}

// When the volume's snapshot cannot be made, every VM that needs it fails (each retries making
// it), and nothing is left behind.
TEST_F(QemuBackupTest, PipelineFailureOfTheVolumesSnapshotFailsEveryVmAndLeavesNothing) {
  std::vector<std::string> names, disks;
  for (int i = 0; i < 2; ++i) {
    disks.push_back(Image(Gold() + "/s" + std::to_string(i) + ".qcow2", 0x40 + i));
    names.push_back(StartVm({disks.back()}));
  }
  faults_ = {"storage-snapshot:gold"};
  absl::StatusOr<BackupOutcome> out = engine_->Run(Params(names, ConsistencyMode::kCrash), nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->manifest.state, "failed");
  EXPECT_THAT(out->manifest.snapshots, IsEmpty());
  for (size_t i = 0; i < names.size(); ++i) {
    EXPECT_THAT(VmOf(out->manifest, names[i]).error,
                HasSubstr("storage snapshot of volume 'gold' failed"));
    ExpectBackOnOriginalChain(names[i], {"vda=" + disks[i]});
  }
  EXPECT_FALSE(fs::exists(Gold() + "/.strata-snapshots/b1"));
  EXPECT_FALSE(fs::exists(dir_ / "state/backup-journal/id-b1.json"));
}

// A failure between any two steps leaves the VM running on its original disk chain, with no
// snapshot record and no overlay file; the VM fails in the manifest unless a retry saved it.
struct FaultCase {
  std::string step;  // "<vm>" and "<vol>" are replaced
  bool vm_ok;
  std::string error;
  std::string state = "running";  // a failed resume leaves it paused (and says so)
};

void PrintTo(const FaultCase& c, std::ostream* os) { *os << "fault at " << c.step; }

class QemuBackupFaultTest : public QemuBackupTest,
                            public ::testing::WithParamInterface<FaultCase> {};

TEST_P(QemuBackupFaultTest, LeavesTheVmRunningOnItsOriginalDisk) {
  const std::string disk = Image(Gold() + "/f.qcow2", 0x11);
  const std::string vm = StartVm({disk});
  std::string step = GetParam().step;
  if (auto at = step.find("<vm>"); at != std::string::npos) step.replace(at, 4, vm);
  if (auto at = step.find("<vol>"); at != std::string::npos) step.replace(at, 5, "gold");
  faults_ = {step};
  absl::StatusOr<BackupOutcome> out = engine_->Run(Params({vm}, ConsistencyMode::kPause), nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  const backup::ManifestVm& m = VmOf(out->manifest, vm);
  EXPECT_EQ(m.ok, GetParam().vm_ok) << m.error;
  EXPECT_THAT(m.error, HasSubstr(GetParam().error));
  EXPECT_EQ(State(vm), GetParam().state);
  EXPECT_EQ(Chains(vm), std::vector<std::string>{"vda=" + disk});
  EXPECT_THAT(VmSnapshots(vm), IsEmpty());
  EXPECT_THAT(Overlays(), IsEmpty());
  if (!GetParam().vm_ok) {
    EXPECT_TRUE(out->manifest.snapshots.empty());
    EXPECT_FALSE(fs::exists(Gold() + "/.strata-snapshots/b1"));
  }
  EXPECT_FALSE(fs::exists(dir_ / "state/backup-journal/id-b1.json"));
}

// The same failures in crash consistency, where the VM goes through the per-VM pipeline.
TEST_P(QemuBackupFaultTest, InThePipelineLeavesTheVmRunningOnItsOriginalDisk) {
  if (GetParam().state != "running") GTEST_SKIP() << "crash consistency pauses nothing";
  const std::string disk = Image(Gold() + "/f.qcow2", 0x11);
  const std::string vm = StartVm({disk});
  std::string step = GetParam().step;
  if (auto at = step.find("<vm>"); at != std::string::npos) step.replace(at, 4, vm);
  if (auto at = step.find("<vol>"); at != std::string::npos) step.replace(at, 5, "gold");
  faults_ = {step};
  absl::StatusOr<BackupOutcome> out = engine_->Run(Params({vm}, ConsistencyMode::kCrash), nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  const backup::ManifestVm& m = VmOf(out->manifest, vm);
  EXPECT_EQ(m.ok, GetParam().vm_ok) << m.error;
  EXPECT_THAT(m.error, HasSubstr(GetParam().error));
  ExpectBackOnOriginalChain(vm, {"vda=" + disk});
  if (!GetParam().vm_ok) {
    EXPECT_TRUE(out->manifest.snapshots.empty());
    EXPECT_FALSE(fs::exists(Gold() + "/.strata-snapshots/b1"));
  }
  EXPECT_FALSE(fs::exists(dir_ / "state/backup-journal/id-b1.json"));
}

INSTANTIATE_TEST_SUITE_P(
    Steps, QemuBackupFaultTest,
    ::testing::Values(
        FaultCase{"overlay:<vm>", false, "VM snapshot of '"},
        FaultCase{"overlay-done:<vm>", false, "injected at overlay-done:"},
        FaultCase{"storage-snapshot:<vol>", false, "storage snapshot of volume 'gold' failed"},
        FaultCase{"storage-snapshot-done:<vol>", false, "injected at storage-snapshot-done:gold"},
        FaultCase{"commit:<vm>", true, ""},  // the retry brings it back
        FaultCase{"resume:<vm>", false, "could not be resumed", "paused"}),
    [](const ::testing::TestParamInfo<FaultCase>& info) {
      std::string name = info.param.step.substr(0, info.param.step.find(':'));
      for (char& c : name) {
        if (c == '-') c = '_';
      }
      return name;
    });

TEST_F(QemuBackupTest, CommitThatFailsTwiceIsFinishedByTheNextStart) {
  const std::string disk = Image(Gold() + "/c.qcow2", 0x11);
  const std::string vm = StartVm({disk});
  faults_ = {"commit:" + vm, "commit-retry:" + vm};
  absl::StatusOr<BackupOutcome> out = engine_->Run(Params({vm}, ConsistencyMode::kCrash), nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  const backup::ManifestVm& m = VmOf(out->manifest, vm);
  EXPECT_FALSE(m.ok);
  EXPECT_THAT(m.error, HasSubstr("' could not be brought back from its overlays onto its "
                                 "original disks (the agent retries at its next start): "
                                 "injected at commit-retry:" +
                                 vm));
  const std::string overlay = overlay::OverlayPath(disk, "b1");
  EXPECT_EQ(Chains(vm), std::vector<std::string>{"vda=" + overlay + "<-" + disk});
  EXPECT_TRUE(fs::exists(dir_ / "state/backup-journal/id-b1-overlays.json"));

  faults_.clear();
  std::vector<std::string> lines = NewEngine()->RecoverInterrupted();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], HasSubstr("brought 1 VMs back from their overlays"));
  ExpectBackOnOriginalChain(vm, {"vda=" + disk});
  EXPECT_FALSE(fs::exists(dir_ / "state/backup-journal/id-b1-overlays.json"));
}

TEST_F(QemuBackupTest, AgentThatDiedWhileVmsRanOnOverlaysIsRepairedAtStart) {
  // What a journal holds when the agent died right after the overlays were made: the VM is
  // paused by us and on its overlay. (A real crash, with storage snapshots: qemu_test.)
  const std::string disk = Image(Gold() + "/crash.qcow2", 0x11);
  const std::string vm = StartVm({disk});
  const hypervisor::Domain live = Live(vm);
  overlay::VmOverlayPlan plan = overlay::MakePlan(live, {{"vda", disk}}, "crashed");
  ASSERT_TRUE(services_
                  ->WithHypervisor([&](hypervisor::Hypervisor& h) -> absl::Status {
                    if (absl::Status s = h.Suspend(vm); !s.ok()) return s;
                    return overlay::Create(h, plan);
                  })
                  .ok());
  ASSERT_TRUE(GuestWrite(vm, "vda", 0x55));
  fs::create_directories(dir_ / "state/backup-journal");
  std::ofstream(dir_ / "state/backup-journal/id-crashed.json") << nlohmann::json{
      {"backup", "crashed"},
      {"paused", {live.uuid}},
      {"overlays", {plan.ToJson()}}}.dump();
  EXPECT_EQ(State(vm), "paused");
  EXPECT_EQ(Chains(vm),
            std::vector<std::string>{"vda=" + plan.disks[0].overlay_path + "<-" + disk});

  std::vector<std::string> lines = engine_->RecoverInterrupted();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], HasSubstr("interrupted backup 'crashed' (id-crashed): resumed 1 VMs"));
  EXPECT_THAT(lines[0], HasSubstr("brought 1 VMs back from their overlays"));
  ExpectBackOnOriginalChain(vm, {"vda=" + disk});
  EXPECT_TRUE(Holds(disk, 0x55));  // what the guest wrote on the overlay is kept
  EXPECT_FALSE(fs::exists(dir_ / "state/backup-journal/id-crashed.json"));
  // A second start finds nothing to do.
  EXPECT_THAT(engine_->RecoverInterrupted(), IsEmpty());
}

// The operator destroys the VM after its storage snapshot, while it still runs on its overlay
// (the write made there is newer than the backup): an active commit is impossible, the overlay
// is committed offline and the VM is redefined on its base.
TEST_F(QemuBackupTest, VmDestroyedWhileOnItsOverlayIsCommittedOfflineIntoItsBase) {
  const std::string disk = Image(Gold() + "/off.qcow2", 0x11);
  const std::string vm = StartVm({disk});
  const std::string overlay = overlay::OverlayPath(disk, "b1");
  std::vector<std::string> chain_at_commit;
  std::chrono::steady_clock::time_point commit_start, committed;  // the offline undo
  BackupEngine engine(*services_, [&](const std::string& step) {
    if (step == "commit:" + vm) {
      EXPECT_TRUE(GuestWrite(vm, "vda", 0x33, "20M 3M"));
      EXPECT_TRUE(
          services_->WithHypervisor([&](hypervisor::Hypervisor& h) { return h.Destroy(vm); }).ok());
      chain_at_commit = Chains(vm);
      commit_start = std::chrono::steady_clock::now();
    }
    return absl::OkStatus();
  });
  absl::StatusOr<BackupOutcome> out =
      engine.Run(Params({vm}, ConsistencyMode::kCrash), [&](const BackupStep& s) {
        if (s.step == "committed") committed = std::chrono::steady_clock::now();
      });
  ASSERT_TRUE(out.ok()) << out.status();
  const backup::ManifestVm& m = VmOf(out->manifest, vm);
  ASSERT_TRUE(m.ok) << m.error;
  EXPECT_EQ(out->manifest.state, "succeeded");
  EXPECT_THAT(chain_at_commit, ElementsAre("vda=" + overlay + "<-" + disk));
  RecordProperty(
      "offline_undo_ms",
      std::to_string(
          std::chrono::duration_cast<std::chrono::milliseconds>(committed - commit_start).count()));
  // Shut off, defined on its base, no snapshot record, no overlay file.
  EXPECT_EQ(State(vm), "shutoff");
  EXPECT_EQ(Chains(vm), std::vector<std::string>{"vda=" + disk});
  EXPECT_THAT(VmSnapshots(vm), IsEmpty());
  EXPECT_THAT(Overlays(), IsEmpty());
  // The base has what was written on the overlay; the backup has the base as it was.
  EXPECT_TRUE(Holds(disk, 0x33, "20M 3M"));
  EXPECT_TRUE(Holds(disk, 0x11));
  EXPECT_FALSE(Holds(m.disks[0].snapshot_path, 0x33, "20M 3M"));
  EXPECT_TRUE(Holds(m.disks[0].snapshot_path, 0x11));
  auto [code, text] = Sh("qemu-img check -q '" + disk + "'");
  EXPECT_EQ(code, 0) << text;
  // It starts on its base again.
  ASSERT_TRUE(
      services_->WithHypervisor([&](hypervisor::Hypervisor& h) { return h.Start(vm); }).ok());
  ExpectBackOnOriginalChain(vm, {"vda=" + disk});
}

// What a journal holds when the agent died while the VM ran on its overlay; the VM was then
// shut off before the agent started again.
TEST_F(QemuBackupTest, VmShutOffOnItsOverlayWhileTheAgentWasDownIsRepairedOfflineAtStart) {
  const std::string disk = Image(Gold() + "/down.qcow2", 0x11);
  const std::string vm = StartVm({disk});
  const hypervisor::Domain live = Live(vm);
  overlay::VmOverlayPlan plan = overlay::MakePlan(live, {{"vda", disk}}, "crashed");
  ASSERT_TRUE(
      services_->WithHypervisor([&](hypervisor::Hypervisor& h) { return overlay::Create(h, plan); })
          .ok());
  ASSERT_TRUE(GuestWrite(vm, "vda", 0x55, "20M 3M"));
  ASSERT_TRUE(
      services_->WithHypervisor([&](hypervisor::Hypervisor& h) { return h.Destroy(vm); }).ok());
  fs::create_directories(dir_ / "state/backup-journal");
  std::ofstream(dir_ / "state/backup-journal/id-crashed.json")
      << nlohmann::json{{"backup", "crashed"}, {"overlays", {plan.ToJson()}}}.dump();
  EXPECT_EQ(State(vm), "shutoff");
  EXPECT_EQ(Chains(vm),
            std::vector<std::string>{"vda=" + plan.disks[0].overlay_path + "<-" + disk});
  EXPECT_THAT(VmSnapshots(vm), ElementsAre("crashed"));

  std::vector<std::string> lines = engine_->RecoverInterrupted();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], HasSubstr("brought 1 VMs back from their overlays"));
  EXPECT_THAT(lines[0], Not(HasSubstr("journal kept")));
  EXPECT_EQ(State(vm), "shutoff");
  EXPECT_EQ(Chains(vm), std::vector<std::string>{"vda=" + disk});
  EXPECT_THAT(VmSnapshots(vm), IsEmpty());
  EXPECT_THAT(Overlays(), IsEmpty());
  EXPECT_TRUE(Holds(disk, 0x55, "20M 3M"));
  EXPECT_TRUE(Holds(disk, 0x11));
  EXPECT_FALSE(fs::exists(dir_ / "state/backup-journal/id-crashed.json"));
  EXPECT_THAT(engine_->RecoverInterrupted(), IsEmpty());
}

// A retry after the offline commit succeeded but the redefinition did not: the emptied overlay
// is committed again, which changes nothing in the base, and the repair completes.
TEST_F(QemuBackupTest, OfflineRepairAfterACommitThatWasAlreadyDoneLosesNothing) {
  const std::string disk = Image(Gold() + "/again.qcow2", 0x11);
  const std::string vm = StartVm({disk});
  overlay::VmOverlayPlan plan = overlay::MakePlan(Live(vm), {{"vda", disk}}, "b1");
  ASSERT_TRUE(
      services_->WithHypervisor([&](hypervisor::Hypervisor& h) { return overlay::Create(h, plan); })
          .ok());
  ASSERT_TRUE(GuestWrite(vm, "vda", 0x66, "8M 2M"));
  ASSERT_TRUE(
      services_->WithHypervisor([&](hypervisor::Hypervisor& h) { return h.Destroy(vm); }).ok());
  ASSERT_EQ(Sh("qemu-img commit -q -f qcow2 '" + plan.disks[0].overlay_path + "'").first, 0);
  ASSERT_EQ(Sh("cp '" + disk + "' '" + disk + ".committed'").first, 0);

  absl::Status undone = services_->WithHypervisor(
      [&](hypervisor::Hypervisor& h) { return overlay::Undo(h, plan, std::chrono::seconds(30)); });
  ASSERT_TRUE(undone.ok()) << undone;
  EXPECT_EQ(Sh("cmp '" + disk + ".committed' '" + disk + "'").first, 0);
  EXPECT_TRUE(Holds(disk, 0x66, "8M 2M"));
  EXPECT_EQ(Chains(vm), std::vector<std::string>{"vda=" + disk});
  EXPECT_THAT(VmSnapshots(vm), IsEmpty());
  EXPECT_THAT(Overlays(), IsEmpty());
}

// Someone changed the chain of a shut-off VM's overlay: the repair refuses, touching nothing.
TEST_F(QemuBackupTest, OfflineRepairRefusesAnOverlayThatDoesNotBackOntoThePlannedBase) {
  const std::string disk = Image(Gold() + "/planned.qcow2", 0x11);
  const std::string other = Image(Gold() + "/other.qcow2", 0x22);
  const std::string vm = StartVm({disk});
  overlay::VmOverlayPlan plan = overlay::MakePlan(Live(vm), {{"vda", disk}}, "b1");
  const std::string overlay = plan.disks[0].overlay_path;
  ASSERT_TRUE(
      services_->WithHypervisor([&](hypervisor::Hypervisor& h) { return overlay::Create(h, plan); })
          .ok());
  ASSERT_TRUE(GuestWrite(vm, "vda", 0x33, "20M 3M"));
  ASSERT_TRUE(
      services_->WithHypervisor([&](hypervisor::Hypervisor& h) { return h.Destroy(vm); }).ok());
  for (const std::string& image : {disk, other, overlay}) {
    ASSERT_EQ(Sh("cp '" + image + "' '" + image + ".before'").first, 0);
  }
  const auto undo = [&](const overlay::VmOverlayPlan& p) {
    return services_->WithHypervisor(
        [&](hypervisor::Hypervisor& h) { return overlay::Undo(h, p, std::chrono::seconds(30)); });
  };
  const std::string what =
      "cannot commit overlay '" + overlay + "' of disk 'vda' of shut-off VM '" + vm + "' into '";

  // A plan whose base is not what the VM's definition has under the overlay.
  overlay::VmOverlayPlan wrong = plan;
  wrong.disks[0].base_path = other;
  EXPECT_EQ(undo(wrong),
            absl::FailedPreconditionError(
                what + other + "': the VM's definition has it backed by '" + disk +
                "', not by the planned base; the chain was changed, nothing was done"));

  // The overlay's header was pointed at another image behind libvirt's back.
  ASSERT_EQ(Sh("qemu-img rebase -u -f qcow2 -F qcow2 -b '" + other + "' '" + overlay + "'").first,
            0);
  ASSERT_EQ(Sh("cp '" + overlay + "' '" + overlay + ".before'").first, 0);
  EXPECT_EQ(undo(plan), absl::FailedPreconditionError(
                            what + disk + "': its header has it backed by '" + other +
                            "', not by the planned base; the chain was changed, nothing was done"));

  // Nothing was touched: images, definition, snapshot record.
  for (const std::string& image : {disk, other, overlay}) {
    EXPECT_EQ(Sh("cmp '" + image + ".before' '" + image + "'").first, 0) << image;
  }
  EXPECT_EQ(State(vm), "shutoff");
  EXPECT_EQ(Chains(vm), std::vector<std::string>{"vda=" + overlay + "<-" + disk});
  EXPECT_THAT(VmSnapshots(vm), ElementsAre("b1"));
}

TEST_F(QemuBackupTest, QuiesceWithoutGuestAgentFailsClearlyOrFallsBack) {
  const std::string d1 = Image(Gold() + "/q1.qcow2", 0x11);
  const std::string d2 = Image(Gold() + "/q2.qcow2", 0x12);
  const std::string no_channel = StartVm({d1});
  const std::string channel = StartVm({d2}, /*channel=*/true);  // but no agent inside

  absl::StatusOr<BackupOutcome> out =
      engine_->Run(Params({no_channel, channel}, ConsistencyMode::kQuiesce), nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->manifest.state, "failed");
  EXPECT_EQ(VmOf(out->manifest, no_channel).error,
            "cannot bring VM '" + no_channel + "' to quiesce consistency: VM '" + no_channel +
                "' has no guest agent channel (org.qemu.guest_agent.0): cannot quiesce its file "
                "systems");
  EXPECT_THAT(VmOf(out->manifest, channel).error,
              HasSubstr("cannot bring VM '" + channel +
                        "' to quiesce consistency: cannot freeze "
                        "the file systems of VM '"));
  EXPECT_THAT(VmOf(out->manifest, channel).error, HasSubstr("QEMU guest agent is not connected"));
  ExpectBackOnOriginalChain(no_channel, {"vda=" + d1});
  ExpectBackOnOriginalChain(channel, {"vda=" + d2});

  BackupParams fallback = Params({no_channel, channel}, ConsistencyMode::kQuiesce, "b2");
  fallback.fallback = ConsistencyMode::kPause;
  out = engine_->Run(fallback, nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->manifest.state, "succeeded");
  for (const std::string& vm : {no_channel, channel}) {
    EXPECT_EQ(VmOf(out->manifest, vm).consistency_achieved, "pause") << vm;
    EXPECT_EQ(VmOf(out->manifest, vm).vm_snapshot_kind, "external") << vm;
  }
  ExpectBackOnOriginalChain(no_channel, {"vda=" + d1});
  ExpectBackOnOriginalChain(channel, {"vda=" + d2});
}

TEST_F(QemuBackupTest, RestoreInPlaceIntoAStoppedVmAndAsANewVmThatStarts) {
  const std::string disk = Image(Gold() + "/r.qcow2", 0x11);
  const std::string vm = StartVm({disk});
  absl::StatusOr<BackupOutcome> out = engine_->Run(Params({vm}, ConsistencyMode::kPause), nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_TRUE(VmOf(out->manifest, vm).ok) << VmOf(out->manifest, vm).error;
  const std::string copy = VmOf(out->manifest, vm).disks[0].snapshot_path;

  // The VM changes, then is stopped; in place brings the disk back as it was.
  ASSERT_TRUE(GuestWrite(vm, "vda", 0x66));
  ASSERT_TRUE(
      services_->WithHypervisor([&](hypervisor::Hypervisor& h) { return h.Destroy(vm); }).ok());
  EXPECT_NE(Sh("qemu-img compare '" + copy + "' '" + disk + "'").first, 0);
  RestoreParams in_place;
  in_place.restore_id = "r1";
  in_place.vm = vm;
  in_place.start = false;
  absl::StatusOr<RestoreOutcome> restored = engine_->Restore(out->manifest, in_place, nullptr);
  ASSERT_TRUE(restored.ok()) << restored.status();
  auto [code, text] = Sh("qemu-img compare '" + copy + "' '" + disk + "'");
  EXPECT_EQ(code, 0) << text;
  EXPECT_EQ(State(vm), "shutoff");
  ASSERT_TRUE(
      services_->WithHypervisor([&](hypervisor::Hypervisor& h) { return h.Start(vm); }).ok());
  EXPECT_EQ(State(vm), "running");

  // As a new VM: new name, new disk beside the original, started.
  const std::string new_name = vm + "-copy";
  vms_.push_back(new_name);
  RestoreParams as_new;
  as_new.restore_id = "r2";
  as_new.vm = vm;
  as_new.as_name = new_name;
  as_new.start = true;
  restored = engine_->Restore(out->manifest, as_new, nullptr);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_TRUE(restored->started);
  EXPECT_EQ(State(new_name), "running");
  ASSERT_EQ(restored->disk_paths.size(), 1u);
  EXPECT_NE(restored->disk_paths[0], disk);
  std::tie(code, text) = Sh("qemu-img compare -U '" + copy + "' '" + restored->disk_paths[0] + "'");
  EXPECT_EQ(code, 0) << text;
  EXPECT_EQ(Chains(new_name), std::vector<std::string>{"vda=" + restored->disk_paths[0]});
}

}  // namespace
}  // namespace strata::agent
