#!/bin/bash
# Writes the HAND-MADE tree tests/data/systems/hv01-datacenter: a hypervisor host with storage
# this test VM cannot have (no device-mapper, iSCSI, NVMe or NFS here). Every path, attribute
# name and link shape follows real kernel sysfs layouts (see README.md); only values are made up.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
D="$HERE/hv01-datacenter"
rm -rf "$D"
mkdir -p "$D"

put() {  # put <path under tree> <content>  (sysfs attributes end with a newline)
  mkdir -p "$(dirname "$D/$1")"
  printf '%s\n' "$2" > "$D/$1"
}
link() {  # link <path under tree> <relative target>
  mkdir -p "$(dirname "$D/$1")"
  ln -sfn "$2" "$D/$1"
}
# blk <name> <major:minor> <sysfs dir under sys/, e.g. devices/.../block/sda> <size in sectors>
blk() {
  local name=$1 devnum=$2 dir=$3 size=$4
  put "sys/$dir/dev" "$devnum"
  put "sys/$dir/size" "$size"
  put "sys/$dir/ro" 0
  link "sys/class/block/$name" "../../$dir"
  link "sys/dev/block/$devnum" "../../$dir"
  mkdir -p "$D/dev"
  : > "$D/dev/$name"
  echo "/dev/$name $devnum" >> "$D/devnums"
}
part() {  # part <name> <major:minor> <disk sysfs dir> <number> <size>
  blk "$1" "$2" "$3/$1" "$5"
  put "sys/$3/$1/partition" "$4"
}
placeholder() { mkdir -p "$(dirname "$D/root$1")"; : > "$D/root$1"; }

echo "# hand-made by make_handwritten.sh: <device node> <major>:<minor>" > "$D/devnums"

# --- SATA SSD, partitioned: sda1 = EFI (vfat), sda2 = / (ext4) ---------------------------------
SDA=devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda
blk sda 8:0 $SDA 976773168
link "sys/$SDA/device" ../../../0:0:0:0
put "sys/${SDA%/block/sda}/vendor" "ATA     "
put "sys/${SDA%/block/sda}/model" "Samsung SSD 860 EVO 500GB"
put "sys/${SDA%/block/sda}/wwid" "t10.ATA     Samsung SSD 860 EVO 500GB               S3Z1NB0K123456A     "
part sda1 8:1 $SDA 1 1048576
part sda2 8:2 $SDA 2 975722496

# --- iSCSI multipath: dm-0 (mpatha) over sdb (session1, portal 10.0.10.5) and sdc (session2,
# portal 10.0.20.5), both LUN 1 of the same target -----------------------------------------
IQN=iqn.2003-01.org.linux-iscsi.san01:vmstore
for i in 1 2; do
  host=$((i + 2)); name=$([ $i = 1 ] && echo sdb || echo sdc); devnum=$([ $i = 1 ] && echo 8:16 || echo 8:32)
  S=devices/platform/host$host/session$i
  DIR=$S/target$host:0:0/$host:0:0:1/block/$name
  blk $name $devnum $DIR 4294967296
  link "sys/$DIR/device" ../../../$host:0:0:1
  put "sys/$S/target$host:0:0/$host:0:0:1/vendor" "LIO-ORG "
  put "sys/$S/target$host:0:0/$host:0:0:1/model" "vmstore         "
  link "sys/$DIR/holders/dm-0" ../../../../../../../../virtual/block/dm-0
  put "sys/$S/iscsi_session/session$i/targetname" "$IQN"
  link "sys/class/iscsi_session/session$i" "../../$S/iscsi_session/session$i"
  put "sys/$S/connection$i:0/iscsi_connection/connection$i:0/persistent_address" "10.0.${i}0.5"
  put "sys/$S/connection$i:0/iscsi_connection/connection$i:0/persistent_port" 3260
  link "sys/class/iscsi_connection/connection$i:0" "../../$S/connection$i:0/iscsi_connection/connection$i:0"
done
# sdb reports device/wwid (kernels >= 5.x); sdc only the raw VPD page 0x83 (older kernels):
# a T10 vendor id designator first, then the NAA designator the WWID is built from.
put "sys/devices/platform/host3/session1/target3:0:0/3:0:0:1/wwid" "naa.6001405f3a2b4c5d6e7f8091a2b3c4d5"
printf '\x00\x83\x00\x34\x02\x01\x00\x1cLIO-ORG vmstore 3a2b4c5d6e7f\x01\x03\x00\x10\x60\x01\x40\x5f\x3a\x2b\x4c\x5d\x6e\x7f\x80\x91\xa2\xb3\xc4\xd5' \
  > "$D/sys/devices/platform/host4/session2/target4:0:0/4:0:0:1/vpd_pg83"
DM0=devices/virtual/block/dm-0
blk dm-0 253:0 $DM0 4294967296
put "sys/$DM0/dm/name" mpatha
put "sys/$DM0/dm/uuid" mpath-36001405f3a2b4c5d6e7f8091a2b3c4d5
link "sys/$DM0/slaves/sdb" ../../../../platform/host3/session1/target3:0:0/3:0:0:1/block/sdb
link "sys/$DM0/slaves/sdc" ../../../../platform/host4/session2/target4:0:0/4:0:0:1/block/sdc
link dev/mapper/mpatha ../dm-0
link dev/disk/by-id/dm-uuid-mpath-36001405f3a2b4c5d6e7f8091a2b3c4d5 ../../dm-0
link "dev/disk/by-path/ip-10.0.10.5:3260-iscsi-$IQN-lun-1" ../../sdb

# --- LVM: dm-3 (vgdata/lvimages) over sdd, a NetApp LUN on Fibre Channel ----------------------
SDD=devices/pci0000:00/0000:00:03.0/0000:05:00.0/host5/rport-5:0-0/target5:0:0/5:0:0:3/block/sdd
blk sdd 8:48 $SDD 2147483648
link "sys/$SDD/device" ../../../5:0:0:3
put "sys/${SDD%/block/sdd}/vendor" "NETAPP  "
put "sys/${SDD%/block/sdd}/model" "LUN C-Mode      "
put "sys/${SDD%/block/sdd}/wwid" "naa.600a098038303053453f463045727a41"
DM3=devices/virtual/block/dm-3
blk dm-3 253:3 $DM3 2147475456
put "sys/$DM3/dm/name" vgdata-lvimages
put "sys/$DM3/dm/uuid" LVM-k3Jd9Xq2mZ8Lw4Tt7Yh1Vb6Nc0Rf5Gs2Hp3Qe8Wu4Io9Ay1Sx7Dz6Fv5Bn0Mj
link "sys/$DM3/slaves/sdd" ../../../../pci0000:00/0000:00:03.0/0000:05:00.0/host5/rport-5:0-0/target5:0:0/5:0:0:3/block/sdd
link dev/vgdata/lvimages ../dm-3
link dev/mapper/vgdata-lvimages ../dm-3
link dev/disk/by-path/pci-0000:05:00.0-fc-0x500a09808d2f6a10-lun-3 ../../sdd

# --- NVMe namespace with two partitions ---------------------------------------------------------
NV=devices/pci0000:00/0000:00:04.0/nvme/nvme0
blk nvme0n1 259:0 $NV/nvme0n1 1953525168
link "sys/$NV/nvme0n1/device" ../../nvme0
put "sys/$NV/nvme0n1/wwid" "eui.002538b911b2c3d4"
put "sys/$NV/nvme0n1/nsid" 1
put "sys/$NV/model" "Samsung SSD 980 PRO 1TB                 "
put "sys/$NV/serial" "S5GXNF0R123456      "
put "sys/$NV/subsysnqn" "nqn.2014.08.org.nvmexpress:144d144dS5GXNF0R123456     Samsung SSD 980 PRO 1TB"
part nvme0n1p1 259:1 $NV/nvme0n1 1 209715200
part nvme0n1p2 259:2 $NV/nvme0n1 2 1743808512
link dev/disk/by-id/nvme-Samsung_SSD_980_PRO_1TB_S5GXNF0R123456-part2 ../../nvme0n1p2

# --- mount table --------------------------------------------------------------------------------
mkdir -p "$D/proc/self"
cat > "$D/proc/self/mountinfo" <<'MI'
21 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw,errors=remount-ro
22 21 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
23 21 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
24 21 0:5 / /dev rw,nosuid,relatime shared:2 - devtmpfs udev rw,size=65895432k,nr_inodes=16473858,mode=755
25 21 0:24 / /run rw,nosuid,nodev,noexec,relatime shared:5 - tmpfs tmpfs rw,size=13185236k,mode=755
30 21 8:1 / /boot/efi rw,relatime shared:30 - vfat /dev/sda1 rw,fmask=0077,dmask=0077,codepage=437,iocharset=ascii,shortname=mixed,utf8,errors=remount-ro
31 21 253:3 / /var/lib/libvirt/images rw,relatime shared:31 - ext4 /dev/mapper/vgdata-lvimages rw
32 21 253:0 / /var/lib/libvirt/san rw,relatime shared:32 - xfs /dev/mapper/mpatha rw,attr2,inode64,logbufs=8,logbsize=32k,noquota
33 21 259:2 / /var/lib/libvirt/nvme rw,relatime shared:33 - ext4 /dev/nvme0n1p2 rw
34 21 0:52 / /var/lib/libvirt/nfs rw,relatime shared:34 - nfs4 nas01.example.com:/export/vmimages rw,vers=4.2,rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys,clientaddr=10.0.0.21,local_lock=none,addr=10.0.0.50
35 21 253:3 /tenant\040a /srv/vm\040images/tenant\040ä rw,relatime shared:31 - ext4 /dev/mapper/vgdata-lvimages rw
36 21 0:53 / /mnt/stack rw,relatime shared:35 - tmpfs tmpfs rw,size=1024k
37 36 259:1 / /mnt/stack rw,relatime shared:36 - xfs /dev/nvme0n1p1 rw,attr2,inode64,noquota
MI

# --- blkid -p -o export ---------------------------------------------------------------------------
cat > "$D/blkid.export" <<'BL'
DEVNAME=/dev/sda1
UUID=7A3B-1C2D
BLOCK_SIZE=512
TYPE=vfat
USAGE=filesystem

DEVNAME=/dev/sda2
UUID=2f6d0c1e-8a4b-4c3d-9e5f-0a1b2c3d4e5f
BLOCK_SIZE=4096
TYPE=ext4
USAGE=filesystem

DEVNAME=/dev/mapper/mpatha
LABEL=san\ store
UUID=9b8c7d6e-5f4a-4b3c-8d2e-1f0a9b8c7d6e
BLOCK_SIZE=512
TYPE=xfs
USAGE=filesystem

DEVNAME=/dev/dm-3
LABEL=images
UUID=c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f
BLOCK_SIZE=4096
TYPE=ext4
USAGE=filesystem

DEVNAME=/dev/nvme0n1p1
UUID=5e4d3c2b-1a09-4f8e-b7d6-c5b4a3928170
BLOCK_SIZE=512
TYPE=xfs
USAGE=filesystem

DEVNAME=/dev/nvme0n1p2
LABEL=nvme-vms
UUID=8f7e6d5c-4b3a-4291-8807-f6e5d4c3b2a1
BLOCK_SIZE=4096
TYPE=ext4
USAGE=filesystem
BL

# --- files the tests resolve ----------------------------------------------------------------------
placeholder /var/lib/libvirt/images/web01.qcow2
placeholder "/var/lib/libvirt/images/tenant a/db ü.qcow2"
placeholder "/srv/vm images/tenant ä/db ü.qcow2"
placeholder /var/lib/libvirt/san/vm02.raw
placeholder /var/lib/libvirt/nvme/vm03.qcow2
placeholder /var/lib/libvirt/nfs/shared/vm04.qcow2
placeholder /mnt/stack/x.img
placeholder /etc/hostname
link root/var/lib/libvirt/images/current.qcow2 web01.qcow2
