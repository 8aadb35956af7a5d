// Test plug-in: a shared object without the strata_plugin_init entry point.
extern "C" __attribute__((visibility("default"))) int not_a_strata_plugin() { return 0; }
