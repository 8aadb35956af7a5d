# The backup benchmark (issue 5; printed, not asserted): the agent's BackupEngine through the
# dlopen'ed libvirt and dir plug-ins, on a private libvirtd (test driver) and an xfs (reflink)
# loop device, against an operator's virsh/cp script and a FICLONE floor; snapshot time against
# disk size on xfs and btrfs; the copy fallback against `cp --sparse=always` on ext4; catalog
# insert rate and LatestRestorePoint latency. tests/ is added before bench/, so the private
# libvirtd library of the integration tests (strata_test_libvirtd) is there.
add_executable(backup_bench backup_bench.cc)
target_link_libraries(backup_bench PRIVATE strata_agent strata_catalog strata_file_copy
  strata_test_libvirtd strata_util PkgConfig::LIBVIRT absl::status absl::statusor
  nlohmann_json::nlohmann_json spdlog::spdlog Threads::Threads)
# testing/loop_fs.h: the loop-device file-system helper of the storage plug-in tests.
target_include_directories(backup_bench PRIVATE ${STRATA_SOURCE_DIR}/plugins/storage/dir)
target_compile_definitions(backup_bench PRIVATE STRATA_PLUGIN_DIR="${STRATA_PLUGIN_OUTPUT_DIR}")
add_dependencies(backup_bench strata_plugin_libvirt strata_plugin_dir strata_plugin_btrfs)
# A small run (a few seconds), so that CI proves it runs and prints its table. 77: not root, no
# loop devices or mkfs.xfs, libvirtd or virsh missing (the btrfs and ext4 rows say "skipped" when
# those file systems cannot be made).
add_test(NAME bench_backup_smoke COMMAND backup_bench --quick)
set_tests_properties(bench_backup_smoke PROPERTIES LABELS bench TIMEOUT 300
  SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)

# Backup on real QEMU (issue 7): Strata's overlay path against an operator's virsh script, 1, 4
# and 8 VMs. 77: not root or qemu:///system does not answer.
add_executable(qemu_backup_bench qemu_backup_bench.cc)
target_link_libraries(qemu_backup_bench PRIVATE strata_agent strata_util spdlog::spdlog
  absl::status absl::statusor)
target_compile_definitions(qemu_backup_bench PRIVATE STRATA_PLUGIN_DIR="${STRATA_PLUGIN_OUTPUT_DIR}")
add_dependencies(qemu_backup_bench strata_plugin_libvirt strata_plugin_dir)
add_test(NAME bench_qemu_backup_smoke COMMAND qemu_backup_bench --quick)
set_tests_properties(bench_qemu_backup_smoke PROPERTIES LABELS bench TIMEOUT 120
  SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)
