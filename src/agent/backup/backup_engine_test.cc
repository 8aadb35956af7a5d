// The backup engine on the sample site (libvirt test driver through the dlopen'ed plug-in, real
// disk images made with qemu-img, the dir storage plug-in on this machine's file system):
// backups in each consistency mode, failures injected between steps, restores.
#include "strata/agent/backup_engine.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>

#include "nlohmann/json.hpp"

#include "strata/agent/config.h"
#include "strata/agent/sample_site.h"
#include "strata/storage/file_copy.h"
#include "testing/loop_fs.h"

namespace strata::agent {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void Overwrite(const std::string& path, const std::string& text) {
  std::fstream out(path, std::ios::in | std::ios::out | std::ios::binary);
  out.seekp(0);
  out << text;
}

const backup::ManifestVm& Vm(const backup::BackupManifest& m, const std::string& name) {
  for (const backup::ManifestVm& vm : m.vms) {
    if (vm.name == name) return vm;
  }
  ADD_FAILURE() << "no VM " << name << " in the manifest";
  static const backup::ManifestVm kNone;
  return kNone;
}

class BackupEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() /
            ("strata-backup-engine-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
    absl::StatusOr<SampleSite> site = GenerateSampleSite(dir_);
    ASSERT_TRUE(site.ok()) << site.status();
    ASSERT_TRUE(plugins_.LoadDirectory(STRATA_PLUGIN_DIR).ok());
    absl::StatusOr<AgentConfig> config = LoadAgentConfig(dir_ + "/agents/host-a.toml");
    ASSERT_TRUE(config.ok()) << config.status();
    services_ = std::make_unique<HostServices>(plugins_, *config);
    engine_ = std::make_unique<BackupEngine>(*services_, [this](const std::string& step) {
      return step == fail_at_ ? absl::InternalError("injected at " + step) : absl::OkStatus();
    });
  }
  void TearDown() override {
    engine_.reset();
    services_.reset();
    fs::remove_all(dir_);
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
  hypervisor::DomainState State(const std::string& vm) {
    hypervisor::DomainState state = hypervisor::DomainState::kUnknown;
    EXPECT_TRUE(services_
                    ->WithHypervisor([&](hypervisor::Hypervisor& h) -> absl::Status {
                      absl::StatusOr<hypervisor::DomainState> s = h.GetState(vm);
                      if (!s.ok()) return s.status();
                      state = *s;
                      return absl::OkStatus();
                    })
                    .ok());
    return state;
  }
  std::vector<std::string> VmSnapshots(const std::string& vm) {
    std::vector<std::string> names;
    EXPECT_TRUE(services_
                    ->WithHypervisor([&](hypervisor::Hypervisor& h) -> absl::Status {
                      absl::StatusOr<std::vector<std::string>> s = h.ListVmSnapshots(vm);
                      if (!s.ok()) return s.status();
                      names = *s;
                      return absl::OkStatus();
                    })
                    .ok());
    return names;
  }
  std::string Gold() const { return dir_ + "/volumes/gold"; }
  std::string Silver() const { return dir_ + "/volumes/silver"; }

  std::string dir_;
  PluginHost plugins_;
  std::unique_ptr<HostServices> services_;
  std::unique_ptr<BackupEngine> engine_;
  std::string fail_at_;
};

TEST_F(BackupEngineTest, CrashBackupSnapshotsEachVolumeOnceAndWritesManifests) {
  std::vector<BackupStep> steps;
  absl::StatusOr<BackupOutcome> out =
      engine_->Run(Params({"web01", "web02", "mail01"}, ConsistencyMode::kCrash),
                   [&](const BackupStep& s) { steps.push_back(s); });
  ASSERT_TRUE(out.ok()) << out.status();
  const backup::BackupManifest& m = out->manifest;
  EXPECT_EQ(m.state, "succeeded");
  ASSERT_EQ(m.vms.size(), 3u);
  for (const backup::ManifestVm& vm : m.vms) {
    EXPECT_TRUE(vm.ok) << vm.name << ": " << vm.error;
    EXPECT_EQ(vm.consistency_achieved, "crash");
    EXPECT_EQ(vm.vm_snapshot, "b1");  // the test driver keeps internal snapshots
    EXPECT_THAT(vm.saved_xml, HasSubstr("<name>" + vm.name + "</name>"));
    ASSERT_EQ(vm.disks.size(), 1u);
    EXPECT_TRUE(fs::is_regular_file(vm.disks[0].snapshot_path)) << vm.disks[0].snapshot_path;
    EXPECT_EQ(fs::file_size(vm.disks[0].snapshot_path), fs::file_size(vm.disks[0].source_path));
  }
  // web01 and web02 share gold (and the base image in it): two snapshots, not three.
  ASSERT_EQ(m.snapshots.size(), 2u);
  EXPECT_TRUE(fs::is_regular_file(Gold() + "/.strata-snapshots/b1/web01.qcow2"));
  EXPECT_TRUE(fs::is_regular_file(Gold() + "/.strata-snapshots/b1/base/debian12-base.qcow2"));
  EXPECT_TRUE(fs::is_regular_file(Silver() + "/.strata-snapshots/b1/mail01.qcow2"));
  // Each snapshot has the whole manifest beside it.
  for (const std::string& root : {Gold(), Silver()}) {
    absl::StatusOr<backup::BackupManifest> read =
        backup::ReadManifestFile(root + "/.strata-snapshots/b1.manifest.json");
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(read->backup_id, "id-b1");
    EXPECT_EQ(read->vms.size(), 3u);
  }
  EXPECT_EQ(VmSnapshots("web01"), std::vector<std::string>{"b1"});
  EXPECT_FALSE(steps.empty());
  EXPECT_EQ(steps.back().percent, 100);
  // The backup's graph: backup -> 3 vm snapshots + 2 storage snapshots.
  ASSERT_TRUE(out->graph.Find("backup:id-b1"));
  EXPECT_EQ(out->graph.OutEdges(*out->graph.Find("backup:id-b1")).size(), 5u);
}

TEST_F(BackupEngineTest, PauseModeResumesTheVmEvenWhenTheStorageSnapshotFails) {
  fail_at_ = "storage-snapshot:gold";
  absl::StatusOr<BackupOutcome> out =
      engine_->Run(Params({"web01", "mail01"}, ConsistencyMode::kPause), nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->manifest.state, "partial");
  const backup::ManifestVm& web01 = Vm(out->manifest, "web01");
  EXPECT_FALSE(web01.ok);
  EXPECT_THAT(web01.error, HasSubstr("storage snapshot of volume 'gold' failed: injected"));
  EXPECT_TRUE(Vm(out->manifest, "mail01").ok);
  EXPECT_EQ(Vm(out->manifest, "mail01").consistency_achieved, "pause");
  // Both VMs run again; the failed VM's snapshots are gone.
  EXPECT_EQ(State("web01"), hypervisor::DomainState::kRunning);
  EXPECT_EQ(State("mail01"), hypervisor::DomainState::kRunning);
  EXPECT_TRUE(VmSnapshots("web01").empty());
  EXPECT_FALSE(fs::exists(Gold() + "/.strata-snapshots/b1"));
  EXPECT_TRUE(fs::exists(Silver() + "/.strata-snapshots/b1/mail01.qcow2"));
}

TEST_F(BackupEngineTest, FailureAfterPausingStillResumes) {
  for (const char* step : {"vm-snapshot:web01", "manifest"}) {
    SCOPED_TRACE(step);
    fail_at_ = step;
    absl::StatusOr<BackupOutcome> out =
        engine_->Run(Params({"web01"}, ConsistencyMode::kPause,
                            std::string("f-") + (step[0] == 'v' ? "v" : "m")),
                     nullptr);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(out->manifest.state, "failed");
    EXPECT_EQ(State("web01"), hypervisor::DomainState::kRunning);
    EXPECT_TRUE(VmSnapshots("web01").empty());
    EXPECT_TRUE(out->manifest.snapshots.empty());
    // Rolled back: no snapshot data and no manifest left on the volume.
    if (fs::exists(Gold() + "/.strata-snapshots")) {
      EXPECT_TRUE(fs::is_empty(Gold() + "/.strata-snapshots"));
    }
  }
}

TEST_F(BackupEngineTest, AVmThatCannotBeResumedIsReportedAndItsSnapshotsRemoved) {
  // Everything worked but the resume: the VM is failed with that reason, left paused (and said
  // so), and its snapshots go, since no succeeded VM uses them.
  fail_at_ = "resume:mail01";
  absl::StatusOr<BackupOutcome> out =
      engine_->Run(Params({"mail01"}, ConsistencyMode::kPause), nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  const backup::ManifestVm& vm = Vm(out->manifest, "mail01");
  EXPECT_FALSE(vm.ok);
  EXPECT_EQ(vm.error, "VM 'mail01' could not be resumed: injected at resume:mail01");
  EXPECT_EQ(out->manifest.state, "failed");
  EXPECT_EQ(State("mail01"), hypervisor::DomainState::kPaused);  // said, not hidden
  EXPECT_TRUE(out->manifest.snapshots.empty());                  // nothing half-kept
}

TEST_F(BackupEngineTest, QuiesceNeedsAGuestAgentUnlessAFallbackIsAllowed) {
  absl::StatusOr<BackupOutcome> out =
      engine_->Run(Params({"web01", "mail01"}, ConsistencyMode::kQuiesce), nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_FALSE(Vm(out->manifest, "web01").ok);
  EXPECT_THAT(Vm(out->manifest, "web01").error,
              HasSubstr("VM 'web01' has no guest agent channel (org.qemu.guest_agent.0)"));
  EXPECT_TRUE(Vm(out->manifest, "mail01").ok) << Vm(out->manifest, "mail01").error;
  EXPECT_EQ(Vm(out->manifest, "mail01").consistency_achieved, "quiesce");

  BackupParams with_fallback = Params({"web01"}, ConsistencyMode::kQuiesce, "b2");
  with_fallback.fallback = ConsistencyMode::kPause;
  out = engine_->Run(with_fallback, nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_TRUE(out->manifest.vms[0].ok) << out->manifest.vms[0].error;
  EXPECT_EQ(out->manifest.vms[0].consistency_achieved, "pause");
  EXPECT_EQ(out->manifest.consistency_requested, "quiesce");
  EXPECT_EQ(State("web01"), hypervisor::DomainState::kRunning);
}

TEST_F(BackupEngineTest, DisksNoPluginCanSnapshotFailTheirVmClearly) {
  // db01 has a pass-through LUN next to its file disk.
  absl::StatusOr<BackupOutcome> out =
      engine_->Run(Params({"db01"}, ConsistencyMode::kCrash), nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->manifest.state, "failed");
  EXPECT_THAT(out->manifest.vms[0].error,
              HasSubstr("no storage plug-in on this host can snapshot it"));
}

TEST_F(BackupEngineTest, BadRequestsAreRejectedBeforeAnythingHappens) {
  absl::StatusOr<BackupOutcome> out =
      engine_->Run(Params({"nope"}, ConsistencyMode::kCrash), nullptr);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kNotFound);
  out = engine_->Run(Params({"web01"}, ConsistencyMode::kCrash, "../../etc"), nullptr);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(Gold() + "/.strata-snapshots"));
}

TEST_F(BackupEngineTest, RestoreInPlaceAsNewAndOneDisk) {
  BackupParams params = Params({"mail01"}, ConsistencyMode::kPause);
  params.verify = true;
  absl::StatusOr<BackupOutcome> out = engine_->Run(params, nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_TRUE(out->manifest.vms[0].ok) << out->manifest.vms[0].error;
  const std::string disk = Silver() + "/mail01.qcow2";
  const std::string original = ReadAll(disk);
  ASSERT_THAT(out->manifest.vms[0].disks[0].checksum, HasSubstr("xxh3-128:"));

  // The guest scribbles over its disk; the restore in place brings the backed-up bytes back.
  Overwrite(disk, "garbage garbage garbage");
  ASSERT_NE(ReadAll(disk), original);
  RestoreParams in_place;
  in_place.vm = "mail01";
  in_place.verify = true;
  absl::StatusOr<RestoreOutcome> restored = engine_->Restore(out->manifest, in_place, nullptr);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(ReadAll(disk), original);
  EXPECT_TRUE(restored->started);  // it was running
  EXPECT_EQ(State("mail01"), hypervisor::DomainState::kRunning);

  // As a new VM: new name, new UUID, its own disk.
  RestoreParams as_new;
  as_new.vm = "mail01";
  as_new.as_name = "mail01-copy";
  restored = engine_->Restore(out->manifest, as_new, nullptr);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_NE(restored->vm_uuid, out->manifest.vms[0].uuid);
  ASSERT_EQ(restored->disk_paths.size(), 1u);
  EXPECT_EQ(restored->disk_paths[0], Silver() + "/mail01-copy-vda.qcow2");
  EXPECT_EQ(ReadAll(restored->disk_paths[0]), original);
  EXPECT_EQ(State("mail01-copy"), hypervisor::DomainState::kShutoff);
  // Again: the name is taken.
  EXPECT_EQ(engine_->Restore(out->manifest, as_new, nullptr).status().code(),
            absl::StatusCode::kAlreadyExists);

  // A single disk, by target; an unknown target is NotFound.
  Overwrite(disk, "more garbage");
  RestoreParams one_disk;
  one_disk.vm = "mail01";
  one_disk.disks = {"vda"};
  ASSERT_TRUE(engine_->Restore(out->manifest, one_disk, nullptr).ok());
  EXPECT_EQ(ReadAll(disk), original);
  one_disk.disks = {"vdz"};
  EXPECT_EQ(engine_->Restore(out->manifest, one_disk, nullptr).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(BackupEngineTest, ACorruptCopyIsRefusedAndTheDiskLeftAlone) {
  BackupParams params = Params({"mail01"}, ConsistencyMode::kCrash);
  params.verify = true;
  absl::StatusOr<BackupOutcome> out = engine_->Run(params, nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  const std::string disk = Silver() + "/mail01.qcow2";
  Overwrite(out->manifest.vms[0].disks[0].snapshot_path, "bit rot");
  Overwrite(disk, "current data");
  const std::string current = ReadAll(disk);
  RestoreParams in_place;
  in_place.vm = "mail01";
  in_place.verify = true;
  absl::StatusOr<RestoreOutcome> restored = engine_->Restore(out->manifest, in_place, nullptr);
  EXPECT_EQ(restored.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(restored.status().message(), HasSubstr("is corrupt"));
  EXPECT_EQ(ReadAll(disk), current);
  EXPECT_EQ(State("mail01"), hypervisor::DomainState::kRunning);  // never stopped
}

TEST_F(BackupEngineTest, AFailedCopyOfARestoreAsNewLeavesNothingBehind) {
  absl::StatusOr<BackupOutcome> out =
      engine_->Run(Params({"mail01"}, ConsistencyMode::kCrash), nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  fail_at_ = "define:mail01-new";
  RestoreParams as_new;
  as_new.vm = "mail01";
  as_new.as_name = "mail01-new";
  absl::StatusOr<RestoreOutcome> restored = engine_->Restore(out->manifest, as_new, nullptr);
  EXPECT_FALSE(restored.ok());
  EXPECT_FALSE(fs::exists(Silver() + "/mail01-new-vda.qcow2"));
  EXPECT_FALSE(services_
                   ->WithHypervisor(
                       [](hypervisor::Hypervisor& h) { return h.GetState("mail01-new").status(); })
                   .ok());
}

TEST_F(BackupEngineTest, DeleteSnapshotRemovesDataAndManifest) {
  absl::StatusOr<BackupOutcome> out =
      engine_->Run(Params({"mail01"}, ConsistencyMode::kCrash), nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  const backup::ManifestSnapshot& snap = out->manifest.snapshots.at(0);
  ASSERT_TRUE(engine_->DeleteSnapshot(snap.storage_volume, snap.snapshot_id).ok());
  EXPECT_FALSE(fs::exists(Silver() + "/.strata-snapshots/b1"));
  EXPECT_FALSE(fs::exists(Silver() + "/.strata-snapshots/b1.manifest.json"));
  EXPECT_EQ(engine_->DeleteSnapshot(snap.storage_volume, snap.snapshot_id).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(engine_->DeleteSnapshot(snap.storage_volume, "../x").code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(BackupEngineTest, AJournalLeftByACrashIsUndoneAtStart) {
  // What a run that died after pausing web01 and snapshotting gold leaves behind.
  const std::string uuid = "5a3f0000-0000-4000-8000-000001000001";
  ASSERT_TRUE(
      services_->WithHypervisor([&](hypervisor::Hypervisor& h) { return h.Suspend(uuid); }).ok());
  std::vector<std::optional<HostServices::FileVolume>> claims =
      services_->ClaimFiles({Gold() + "/web01.qcow2"});
  ASSERT_TRUE(claims[0].has_value());
  plugin::SnapshotRequest request{
      claims[0]->volume.volume_id, "crashed", {Gold() + "/web01.qcow2"}};
  ASSERT_TRUE(claims[0]->plugin->CreateSnapshot(request).ok());
  const std::string journal = dir_ + "/state/host-a/backup-journal/id-crashed.json";
  fs::create_directories(fs::path(journal).parent_path());
  std::ofstream(journal) << nlohmann::json{
      {"backup", "crashed"},
      {"paused", {uuid}},
      {"storage_snapshots",
       {{{"volume", claims[0]->volume.volume_id},
         {"snapshot", "crashed"},
         {"root", Gold()}}}}}.dump();
  ASSERT_EQ(State("web01"), hypervisor::DomainState::kPaused);

  std::vector<std::string> report = engine_->RecoverInterrupted();
  ASSERT_EQ(report.size(), 1u);
  EXPECT_THAT(report[0], HasSubstr("resumed 1 VMs"));
  EXPECT_THAT(report[0], HasSubstr("1 storage snapshots"));
  EXPECT_EQ(State("web01"), hypervisor::DomainState::kRunning);
  EXPECT_FALSE(fs::exists(Gold() + "/.strata-snapshots/crashed"));
  EXPECT_FALSE(fs::exists(journal));
  EXPECT_TRUE(engine_->RecoverInterrupted().empty());  // done once
}

TEST_F(BackupEngineTest, TheJournalIsGoneAfterEveryBackup) {
  ASSERT_TRUE(engine_->Run(Params({"mail01"}, ConsistencyMode::kPause), nullptr).ok());
  fail_at_ = "storage-snapshot:silver";
  ASSERT_TRUE(engine_->Run(Params({"mail01"}, ConsistencyMode::kPause, "b2"), nullptr).ok());
  const std::string dir = dir_ + "/state/host-a/backup-journal";
  ASSERT_TRUE(fs::is_directory(dir));  // it was used
  EXPECT_TRUE(fs::is_empty(dir));
}

TEST_F(BackupEngineTest, RestoreFromASnapshotDeletedBehindOurBackIsRefusedClearly) {
  absl::StatusOr<BackupOutcome> out =
      engine_->Run(Params({"mail01"}, ConsistencyMode::kCrash), nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  fs::remove_all(Silver() + "/.strata-snapshots/b1");
  const std::string disk = Silver() + "/mail01.qcow2";
  const std::string before = ReadAll(disk);
  RestoreParams in_place;
  in_place.vm = "mail01";
  absl::StatusOr<RestoreOutcome> restored = engine_->Restore(out->manifest, in_place, nullptr);
  EXPECT_EQ(restored.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(restored.status().message(),
              HasSubstr("the copy of disk 'vda' of VM 'mail01' in backup 'b1' is missing: '" +
                        Silver() + "/.strata-snapshots/b1/mail01.qcow2'"));
  EXPECT_EQ(ReadAll(disk), before);
  EXPECT_EQ(State("mail01"), hypervisor::DomainState::kRunning);
}

// The same flows on a btrfs subvolume (the btrfs plug-in: read-only subvolume snapshots), on a
// real btrfs file system made on a loop device. Needs root; skipped visibly otherwise.
TEST(BtrfsBackupTest, BackupAndRestoreOnABtrfsSubvolume) {
  testing::LoopFs btrfs;
  if (absl::Status s = btrfs.Create("btrfs", "-q"); !s.ok()) {
    if (absl::IsFailedPrecondition(s)) GTEST_SKIP() << s.message();
    FAIL() << s;
  }
  const std::string subvolume = btrfs.mount_point() + "/vms";
  ASSERT_TRUE(testing::Shell("btrfs subvolume create " + testing::Quote(subvolume)));
  const std::string disk = subvolume + "/bt01.raw";
  ASSERT_TRUE(testing::Shell("dd if=/dev/urandom of=" + testing::Quote(disk) +
                             " bs=1M count=4 status=none"));
  const std::string original = ReadAll(disk);

  PluginHost plugins;
  ASSERT_TRUE(plugins.LoadDirectory(STRATA_PLUGIN_DIR).ok());
  AgentConfig config;
  config.host_id = "bt";
  config.connect = "test:///default";
  config.btrfs_volumes = {{"fast", subvolume}};
  config.state_dir = btrfs.mount_point() + "/state";
  HostServices services(plugins, config);
  BackupEngine engine(services);
  const std::string xml =
      "<domain type='test'><name>bt01</name><uuid>b7000000-0000-4000-8000-000000000001</uuid>"
      "<memory>65536</memory><os><type>hvm</type></os><devices><disk type='file' device='disk'>"
      "<driver name='qemu' type='raw'/><source file='" +
      disk +
      "'/><target dev='vda'/></disk>"
      "</devices></domain>";
  ASSERT_TRUE(services
                  .WithHypervisor([&](hypervisor::Hypervisor& h) -> absl::Status {
                    absl::StatusOr<std::string> uuid = h.DefineXml(xml);
                    if (!uuid.ok()) return uuid.status();
                    return h.Start(*uuid);
                  })
                  .ok());

  BackupParams params;
  params.backup_id = "id-bt";
  params.name = "bt";
  params.vms = {"bt01"};
  params.consistency = ConsistencyMode::kPause;
  params.verify = true;
  absl::StatusOr<BackupOutcome> out = engine.Run(params, nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_TRUE(out->manifest.vms[0].ok) << out->manifest.vms[0].error;
  ASSERT_EQ(out->manifest.snapshots.size(), 1u);
  EXPECT_EQ(out->manifest.snapshots[0].plugin, "btrfs");
  EXPECT_EQ(out->manifest.snapshots[0].method, "subvolume");
  const std::string snapshot = subvolume + "/.strata-snapshots/bt";
  EXPECT_EQ(testing::Shell("btrfs property get -ts " + testing::Quote(snapshot) + " ro"),
            "ro=true");
  EXPECT_EQ(ReadAll(snapshot + "/bt01.raw"), original);

  Overwrite(disk, "damage");
  RestoreParams in_place;
  in_place.vm = "bt01";
  in_place.verify = true;
  absl::StatusOr<RestoreOutcome> restored = engine.Restore(out->manifest, in_place, nullptr);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(ReadAll(disk), original);
  RestoreParams as_new;
  as_new.vm = "bt01";
  as_new.as_name = "bt01-copy";
  restored = engine.Restore(out->manifest, as_new, nullptr);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(ReadAll(subvolume + "/bt01-copy-vda.raw"), original);
  ASSERT_TRUE(engine.DeleteSnapshot(out->manifest.snapshots[0].storage_volume, "bt").ok());
  EXPECT_FALSE(fs::exists(snapshot));
  // test:///default is shared by the whole process: leave it as found.
  services
      .WithHypervisor([](hypervisor::Hypervisor& h) {
        h.Destroy("bt01").IgnoreError();
        h.Undefine("bt01").IgnoreError();
        return h.Undefine("bt01-copy");
      })
      .IgnoreError();
}

// A scripted coordinator: what the engine would hear from a cluster coordinator.
class ScriptedCoordination final : public SnapshotCoordination {
 public:
  std::function<absl::StatusOr<std::vector<VolumeNeed>>(const std::vector<VolumeNeed>&)> plan;
  std::function<absl::StatusOr<std::vector<TakenSnapshot>>(const std::vector<TakenSnapshot>&)>
      exchange;
  std::vector<VolumeNeed> needs_seen;
  std::vector<TakenSnapshot> taken_seen;
  std::vector<hypervisor::DomainState> state_at_plan;
  std::function<hypervisor::DomainState()> probe;

  absl::StatusOr<std::vector<VolumeNeed>> Plan(const std::vector<VolumeNeed>& needs) override {
    needs_seen = needs;
    if (probe) state_at_plan.push_back(probe());
    return plan(needs);
  }
  absl::StatusOr<std::vector<TakenSnapshot>> Exchange(
      const std::vector<TakenSnapshot>& taken) override {
    taken_seen = taken;
    return exchange(taken);
  }
};

TEST_F(BackupEngineTest, CoordinatedBackupTakesWhatItIsToldWithEveryHostsFilesAndUsesTheRest) {
  // This host (web01 on gold, mail01 on silver) is told to take gold, with another host's file
  // in it too, and gets silver's snapshot from "host-x".
  const std::string other_file = Gold() + "/web03.qcow2";
  ScriptedCoordination c;
  c.probe = [&] { return State("web01"); };
  c.plan = [&](const std::vector<VolumeNeed>& needs) -> absl::StatusOr<std::vector<VolumeNeed>> {
    std::vector<VolumeNeed> take;
    for (VolumeNeed need : needs) {
      if (need.volume_name != "gold") continue;
      need.files.push_back(other_file);
      take.push_back(need);
    }
    return take;
  };
  // "host-x" made silver's snapshot: here, by hand, the way its dir plug-in would.
  fs::create_directories(Silver() + "/.strata-snapshots/cb");
  fs::copy_file(Silver() + "/mail01.qcow2", Silver() + "/.strata-snapshots/cb/mail01.qcow2");
  c.exchange =
      [&](const std::vector<TakenSnapshot>&) -> absl::StatusOr<std::vector<TakenSnapshot>> {
    TakenSnapshot silver;
    for (const VolumeNeed& n : c.needs_seen) {
      if (n.volume_name == "silver") silver.volume_id = n.volume_id;
    }
    silver.volume_name = "silver";
    silver.volume_root = Silver();
    silver.plugin = "dir";
    silver.host = "host-x";
    silver.info.snapshot_id = "cb";
    silver.info.path = Silver() + "/.strata-snapshots/cb";
    silver.info.method = "copy";
    silver.info.files = {{Silver() + "/mail01.qcow2", "mail01.qcow2", 1, "copy"}};
    return std::vector<TakenSnapshot>{silver};
  };
  BackupParams params = Params({"web01", "mail01"}, ConsistencyMode::kPause, "cb");
  params.coordination = &c;
  absl::StatusOr<BackupOutcome> out = engine_->Run(params, nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->manifest.state, "succeeded") << Vm(out->manifest, "mail01").error;
  // The plan was asked while the VMs were held (paused), with both volumes' needs.
  ASSERT_EQ(c.state_at_plan.size(), 1u);
  EXPECT_EQ(c.state_at_plan[0], hypervisor::DomainState::kPaused);
  EXPECT_EQ(c.needs_seen.size(), 2u);
  // gold taken here with the other host's file in it; silver not taken here.
  EXPECT_TRUE(fs::is_regular_file(Gold() + "/.strata-snapshots/cb/web01.qcow2"));
  EXPECT_TRUE(fs::is_regular_file(Gold() + "/.strata-snapshots/cb/web03.qcow2"));
  ASSERT_EQ(c.taken_seen.size(), 1u);
  EXPECT_EQ(c.taken_seen[0].volume_name, "gold");
  EXPECT_EQ(c.taken_seen[0].host, "host-a");
  const backup::ManifestVm& mail01 = Vm(out->manifest, "mail01");
  ASSERT_EQ(mail01.disks.size(), 1u);
  EXPECT_EQ(mail01.disks[0].snapshot_path, Silver() + "/.strata-snapshots/cb/mail01.qcow2");
  // This host's part of the manifest beside the snapshot host-x took; its own beside gold's.
  EXPECT_TRUE(fs::is_regular_file(Silver() + "/.strata-snapshots/cb@host-a.manifest.json"));
  EXPECT_TRUE(fs::is_regular_file(Gold() + "/.strata-snapshots/cb.manifest.json"));
  EXPECT_EQ(State("web01"), hypervisor::DomainState::kRunning);
  EXPECT_EQ(State("mail01"), hypervisor::DomainState::kRunning);
  // Deleting the snapshot removes every host's part of its manifest.
  ASSERT_TRUE(engine_->DeleteSnapshot(c.needs_seen[1].volume_id, "cb").ok());
  EXPECT_FALSE(fs::exists(Silver() + "/.strata-snapshots/cb@host-a.manifest.json"));
}

TEST_F(BackupEngineTest, ACoordinatorThatGoesAwayFailsTheVmsAndReleasesThem) {
  ScriptedCoordination c;
  c.plan = [](const std::vector<VolumeNeed>&) -> absl::StatusOr<std::vector<VolumeNeed>> {
    return absl::UnavailableError("the coordinator went away");
  };
  c.exchange = [](const std::vector<TakenSnapshot>&) -> absl::StatusOr<std::vector<TakenSnapshot>> {
    ADD_FAILURE() << "no exchange after a failed plan";
    return std::vector<TakenSnapshot>{};
  };
  BackupParams params = Params({"web01", "mail01"}, ConsistencyMode::kPause, "gone");
  params.coordination = &c;
  absl::StatusOr<BackupOutcome> out = engine_->Run(params, nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->manifest.state, "failed");
  EXPECT_THAT(Vm(out->manifest, "web01").error,
              HasSubstr("cluster snapshot planning failed: the coordinator went away"));
  EXPECT_EQ(State("web01"), hypervisor::DomainState::kRunning);
  EXPECT_EQ(State("mail01"), hypervisor::DomainState::kRunning);
  EXPECT_FALSE(fs::exists(Gold() + "/.strata-snapshots/gone"));
  EXPECT_TRUE(VmSnapshots("web01").empty());
}

}  // namespace
}  // namespace strata::agent
