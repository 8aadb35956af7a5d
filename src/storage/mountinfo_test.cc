#include "mountinfo.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace strata::storage {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(UnescapeMountField, OctalEscapes) {
  EXPECT_EQ(UnescapeMountField("/srv/a\\040b"), "/srv/a b");
  EXPECT_EQ(UnescapeMountField("tab\\011nl\\012bs\\134end"), "tab\tnl\nbs\\end");
  EXPECT_EQ(UnescapeMountField("/été/ü"), "/été/ü");  // UTF-8 is not escaped by the kernel
  // Not an escape: kept verbatim.
  EXPECT_EQ(UnescapeMountField("a\\09z\\"), "a\\09z\\");
  EXPECT_EQ(UnescapeMountField("\\04"), "\\04");
}

TEST(ParseMountInfo, FieldsOptionalFieldsAndEscapes) {
  auto entries = ParseMountInfo(
      "36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 shared:2 - ext3 /dev/root "
      "rw,errors=continue\n"
      "42 27 7:0 /sub\\040dir /srv/strata\\040rec/bind\\040ü rw,relatime - ext4 /dev/loop0 rw\n"
      "\n"
      "50 27 0:52 / /nfs rw - nfs4 nas:/export\\040x rw,vers=4.2\n");
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 3u);
  const MountEntry& a = (*entries)[0];
  EXPECT_EQ(a.id, 36);
  EXPECT_EQ(a.parent_id, 35);
  EXPECT_EQ(a.DevNum(), "98:0");
  EXPECT_EQ(a.root, "/mnt1");
  EXPECT_EQ(a.mount_point, "/mnt/parent");
  EXPECT_EQ(a.options, "rw,noatime");
  EXPECT_THAT(a.optional_fields, ElementsAre("master:1", "shared:2"));
  EXPECT_EQ(a.fstype, "ext3");
  EXPECT_EQ(a.source, "/dev/root");
  EXPECT_EQ(a.super_options, "rw,errors=continue");
  EXPECT_EQ((*entries)[1].root, "/sub dir");
  EXPECT_EQ((*entries)[1].mount_point, "/srv/strata rec/bind ü");
  EXPECT_TRUE((*entries)[1].optional_fields.empty());
  EXPECT_EQ((*entries)[2].source, "nas:/export x");
}

TEST(ParseMountInfo, MalformedLinesNameTheLine) {
  EXPECT_EQ(ParseMountInfo("1 2 3\n").status().message(),
            "mountinfo line 1: too few fields: '1 2 3'");
  EXPECT_EQ(ParseMountInfo("\n1 0 8:1 / / rw a b c d e\n").status().message(),
            "mountinfo line 2: no '-' separator: '1 0 8:1 / / rw a b c d e'");
  EXPECT_EQ(ParseMountInfo("x 0 8:1 / / rw - ext4 /dev/sda1 rw\n").status().message(),
            "mountinfo line 1: bad mount id: 'x 0 8:1 / / rw - ext4 /dev/sda1 rw'");
  EXPECT_EQ(ParseMountInfo("1 0 8-1 / / rw - ext4 /dev/sda1 rw\n").status().message(),
            "mountinfo line 1: bad major:minor: '1 0 8-1 / / rw - ext4 /dev/sda1 rw'");
  EXPECT_EQ(
      ParseMountInfo("1 0 8:1 / rel rw - ext4 /dev/sda1 rw\n").status().message(),
      "mountinfo line 1: mount point is not absolute: '1 0 8:1 / rel rw - ext4 /dev/sda1 rw'");
  EXPECT_EQ(ParseMountInfo("1 0 8:1 / / rw x y z - ext4\n").status().message(),
            "mountinfo line 1: too few fields after '-': '1 0 8:1 / / rw x y z - ext4'");
}

TEST(IsPathPrefix, ComponentBoundaries) {
  EXPECT_TRUE(IsPathPrefix("/", "/a"));
  EXPECT_TRUE(IsPathPrefix("/srv", "/srv"));
  EXPECT_TRUE(IsPathPrefix("/srv", "/srv/a"));
  EXPECT_FALSE(IsPathPrefix("/srv", "/srv2/a"));
  EXPECT_FALSE(IsPathPrefix("/srv/a", "/srv"));
  EXPECT_FALSE(IsPathPrefix("/", "relative"));
}

TEST(JoinFsPath, RootAndRelative) {
  EXPECT_EQ(JoinFsPath("/", "/a/b"), "/a/b");
  EXPECT_EQ(JoinFsPath("/", ""), "/");
  EXPECT_EQ(JoinFsPath("/exports/x", "/a"), "/exports/x/a");
  EXPECT_EQ(JoinFsPath("/exports/x/", "/a"), "/exports/x/a");
  EXPECT_EQ(JoinFsPath("/exports/x", ""), "/exports/x");
}

MountTable Table(const std::string& text) {
  auto entries = ParseMountInfo(text);
  EXPECT_TRUE(entries.ok()) << entries.status();
  return MountTable(entries.ok() ? *entries : std::vector<MountEntry>{});
}

std::string MountOf(const MountTable& table, const std::string& path) {
  const MountEntry* m = table.FindMount(path);
  return m == nullptr ? "<none>" : m->mount_point + " (" + std::to_string(m->id) + ")";
}

TEST(MountTable, LongestPrefixOnComponentBoundaries) {
  MountTable t = Table(
      "20 1 8:2 / / rw - ext4 /dev/sda2 rw\n"
      "21 20 8:3 / /srv rw - ext4 /dev/sda3 rw\n"
      "22 21 8:4 / /srv/data rw - xfs /dev/sda4 rw\n");
  EXPECT_EQ(MountOf(t, "/srv/data/x.img"), "/srv/data (22)");
  EXPECT_EQ(MountOf(t, "/srv/data"), "/srv/data (22)");
  EXPECT_EQ(MountOf(t, "/srv/database/x"), "/srv (21)");
  EXPECT_EQ(MountOf(t, "/srv2/x"), "/ (20)");
  EXPECT_EQ(MountOf(t, "/"), "/ (20)");
}

TEST(MountTable, RootListedAfterItsChildren) {
  // Real order of this VM's /proc/self/mountinfo: children of / come before / itself.
  MountTable t = Table(
      "22 27 0:21 / /proc rw - proc proc rw\n"
      "27 1 254:0 / / rw - ext4 /dev/vda rw\n");
  EXPECT_EQ(MountOf(t, "/proc/self"), "/proc (22)");
  EXPECT_EQ(MountOf(t, "/etc"), "/ (27)");
}

TEST(MountTable, StackedMountHidesTheOneBelowAndItsChildren) {
  MountTable t = Table(
      "20 1 8:2 / / rw - ext4 /dev/sda2 rw\n"
      "30 20 8:3 / /a rw - ext4 /dev/sda3 rw\n"
      "31 30 8:4 / /a/b rw - ext4 /dev/sda4 rw\n"
      "32 30 0:40 / /a rw - tmpfs tmpfs rw\n");  // mounted over /a later: hides 30 and 31
  EXPECT_EQ(MountOf(t, "/a/b/c"), "/a (32)");
  EXPECT_EQ(MountOf(t, "/a/x"), "/a (32)");
}

TEST(MountTable, LaterMountOnSameMountPointWinsWithoutParentLinks) {
  // Hand-written tables often give every line the same parent.
  MountTable t = Table(
      "2 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
      "3 1 8:2 / /srv rw - ext4 /dev/sda2 rw\n"
      "4 1 8:3 / /srv rw - xfs /dev/sda3 rw\n");
  EXPECT_EQ(MountOf(t, "/srv/x"), "/srv (4)");
}

TEST(MountTable, NoMountCoversThePath) {
  MountTable t = Table("2 1 8:1 / /srv rw - ext4 /dev/sda1 rw\n");
  EXPECT_EQ(MountOf(t, "/etc/x"), "<none>");
  EXPECT_EQ(MountOf(MountTable(), "/x"), "<none>");
}

TEST(MountTable, PathInFsUsesTheBindRoot) {
  MountTable t = Table(
      "27 1 254:0 / / rw - ext4 /dev/vda rw\n"
      "45 27 7:0 /sub\\040dir /srv/bind\\040ü rw - ext4 /dev/loop0 rw\n"
      "46 27 7:0 / /srv/vol rw - ext4 /dev/loop0 rw\n");
  const MountEntry* bind = t.FindMount("/srv/bind ü/disk é.qcow2");
  ASSERT_NE(bind, nullptr);
  EXPECT_EQ(MountTable::PathInFs(*bind, "/srv/bind ü/disk é.qcow2"), "/sub dir/disk é.qcow2");
  EXPECT_EQ(MountTable::PathInFs(*bind, "/srv/bind ü"), "/sub dir");
  const MountEntry* vol = t.FindMount("/srv/vol/sub dir/disk é.qcow2");
  ASSERT_NE(vol, nullptr);
  EXPECT_EQ(MountTable::PathInFs(*vol, "/srv/vol/sub dir/disk é.qcow2"), "/sub dir/disk é.qcow2");
  const MountEntry* root = t.FindMount("/etc/hosts");
  ASSERT_NE(root, nullptr);
  EXPECT_EQ(MountTable::PathInFs(*root, "/etc/hosts"), "/etc/hosts");
}

TEST(MountTable, ParsesThisVmsRecordedMountInfo) {
  // Recorded tree: tests/data/systems/live-loops (real mountinfo of this VM with loop mounts).
  std::string path = std::string(STRATA_TEST_DATA_DIR) + "/systems/live-loops/proc/self/mountinfo";
  FILE* f = fopen(path.c_str(), "r");
  ASSERT_NE(f, nullptr) << path;
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  fclose(f);
  auto entries = ParseMountInfo(text);
  ASSERT_TRUE(entries.ok()) << entries.status();
  MountTable t(*entries);
  const MountEntry* m = t.FindMount("/srv/strata rec/btrfs-été/images/guest one.raw");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->fstype, "btrfs");
  EXPECT_EQ(m->source, "/dev/loop1");
  EXPECT_THAT(t.FindMount("/srv/strata rec/bind ü/x")->root, HasSubstr("/sub dir"));
}

}  // namespace
}  // namespace strata::storage
