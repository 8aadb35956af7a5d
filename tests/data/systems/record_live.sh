#!/bin/bash
# Records the REAL trees tests/data/systems/live-vm and live-loops from the machine it runs on
# (run as root; needs losetup, mkfs.ext4, mkfs.btrfs, mkfs.xfs, blkid).
#
#   live-vm     this VM as it is: root file system ext4 on virtio /dev/vda.
#   live-loops  the same VM with three loop devices (ext4, btrfs, xfs on image files under
#               /srv/strata-images) mounted under "/srv/strata rec/..." (spaces, non-ASCII), and
#               a bind mount of a sub-directory of the ext4 volume at "/srv/strata rec/bind ü".
#
# Only the files the resolver reads are copied: /proc/self/mountinfo (minus the lines of the
# tool sandbox this was recorded in), for each block device its /sys/class/block and
# /sys/dev/block links, the attributes under its /sys/devices directory, its `device` link and
# that device's vendor/model/serial/wwid; sysfs symlinks are kept as the kernel's relative
# links. dev/ holds empty placeholders, devnums the real major:minor of each node, root/ empty
# placeholders of the files the tests resolve, blkid.export the output of
# `blkid -p -o export` (plus ERROR= lines for devices that could not be probed).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)

rec_path() {  # copies one sysfs/proc file or symlink into $DEST, same path
  local p=$1 d="$DEST$1"
  [ -e "$p" ] || [ -L "$p" ] || return 0
  mkdir -p "$(dirname "$d")"
  if [ -L "$p" ]; then
    ln -sfn "$(readlink "$p")" "$d"
  elif [ -f "$p" ]; then
    cat "$p" > "$d" 2>/dev/null || rm -f "$d"
  fi
}

rec_block() {  # records what the resolver reads about one block device
  local name=$1 dir dev a s
  rec_path "/sys/class/block/$name"
  dir=$(readlink -f "/sys/class/block/$name")
  for a in dev size partition ro removable serial wwid nsid loop/backing_file loop/offset \
           loop/sizelimit loop/autoclear dm/name dm/uuid; do
    rec_path "$dir/$a"
  done
  mkdir -p "$DEST$dir/slaves"
  for s in "$dir"/slaves/*; do rec_path "$s"; done
  rec_path "/sys/dev/block/$(cat "$dir/dev")"
  if [ -L "$dir/device" ]; then
    rec_path "$dir/device"
    dev=$(readlink -f "$dir/device")
    for a in vendor device model serial wwid vpd_pg83 subsysnqn rev; do rec_path "$dev/$a"; done
  fi
  mkdir -p "$DEST/dev"
  : > "$DEST/dev/$name"
  echo "/dev/$name $(stat -c '%Hr:%Lr' "/dev/$name")" >> "$DEST/devnums"
}

rec_blkid() {  # appends `blkid -p -o export` of one device, or its error
  local name=$1 out
  if out=$(blkid -p -o export "/dev/$name" 2>&1); then
    printf '%s\n\n' "$out" >> "$DEST/blkid.export"
  else
    printf 'DEVNAME=/dev/%s\nERROR=%s\n\n' "$name" "${out##*: }" >> "$DEST/blkid.export"
  fi
}

rec_mountinfo() {
  mkdir -p "$DEST/proc/self"
  grep -v ' /mnt/sandboxing' /proc/self/mountinfo > "$DEST/proc/self/mountinfo"
}

placeholder() {  # an empty file at the same path under root/
  mkdir -p "$(dirname "$DEST/root$1")"
  : > "$DEST/root$1"
}

start() {
  DEST="$HERE/$1"
  rm -rf "$DEST"
  mkdir -p "$DEST"
  printf '# recorded %s by record_live.sh on %s (kernel %s)\n' "$(date -u +%F)" \
    "$(hostname)" "$(uname -r)" > "$DEST/devnums"
  : > "$DEST/blkid.export"
}

# --- live-vm ---------------------------------------------------------------------------------
start live-vm
rec_mountinfo
rec_block vda
rec_blkid vda
placeholder /var/lib/libvirt/images/guest.qcow2

# --- live-loops ------------------------------------------------------------------------------
IMG=/srv/strata-images
REC="/srv/strata rec"
LOOPS=()
cleanup() {
  set +e
  umount "$REC/bind ü" 2>/dev/null
  for m in "$REC/ext4 vol" "$REC/btrfs-été" "$REC/xfs"; do umount "$m" 2>/dev/null; done
  for l in "${LOOPS[@]}"; do losetup -d "$l"; done
  rm -rf "$IMG" "$REC"
}
trap cleanup EXIT
mkdir -p "$IMG" "$REC/ext4 vol" "$REC/btrfs-été" "$REC/xfs" "$REC/bind ü"
for fs in ext4 btrfs xfs; do
  truncate -s 300M "$IMG/$fs.img"
  LOOPS+=("$(losetup -f --show "$IMG/$fs.img")")
done
mkfs.ext4 -q -L strata-ext4 "${LOOPS[0]}"
mkfs.btrfs -q -L strata-btrfs "${LOOPS[1]}" >/dev/null
mkfs.xfs -q -L strata-xfs "${LOOPS[2]}"
mount "${LOOPS[0]}" "$REC/ext4 vol"
mount "${LOOPS[1]}" "$REC/btrfs-été"
mount "${LOOPS[2]}" "$REC/xfs"
mkdir -p "$REC/ext4 vol/sub dir" "$REC/btrfs-été/images"
mount --bind "$REC/ext4 vol/sub dir" "$REC/bind ü"

start live-loops
rec_mountinfo
rec_block vda
rec_blkid vda
for l in "${LOOPS[@]}"; do
  rec_block "${l#/dev/}"
  rec_blkid "${l#/dev/}"
done
BTRFS_UUID=$(blkid -s UUID -o value "${LOOPS[1]}")
rec_path "/sys/fs/btrfs/$BTRFS_UUID/devices/${LOOPS[1]#/dev/}"
for fs in ext4 btrfs xfs; do placeholder "$IMG/$fs.img"; done
placeholder "$REC/ext4 vol/sub dir/disk é.qcow2"
placeholder "$REC/bind ü/disk é.qcow2"
placeholder "$REC/btrfs-été/images/guest one.raw"
placeholder "$REC/xfs/vm.img"
echo "recorded: $(printf '%s ' "${LOOPS[@]}")"
