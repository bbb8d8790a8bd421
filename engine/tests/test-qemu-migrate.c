/*
** The destination's argv of a migration (pure translation, no QEMU): with
** the source's layout pinned, every PCI device sits in the root port the
** source has it in (a device the source hot-added at rp17 is cold-plugged
** at rp17), there are exactly the source's ports, RAM is the source's boot
** size, QEMU waits with -incoming defer; a device the layout has no port
** for is refused naming it.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "backends/qemu_xlate.h"
#include "task.h"

#define NIC "2b8d8f0e-8f3c-4c55-a3b1-6f2b1c0d9e7a"

/* The argv element after the -device whose JSON has "id":id, or NULL. */
static const char *device(const json_t *argv, const char *id) {
  char want[100];
  snprintf(want, sizeof want, "\"id\":\"%s\"", id);
  for (size_t i = 0; i + 1 < json_array_size(argv); i++)
    if (strcmp(json_string_value(json_array_get(argv, i)), "-device") == 0 &&
        strstr(json_string_value(json_array_get(argv, i + 1)), want))
      return json_string_value(json_array_get(argv, i + 1));
  return NULL;
}

static int has(const json_t *argv, const char *a, const char *b) {
  for (size_t i = 0; i + 1 < json_array_size(argv); i++)
    if (strcmp(json_string_value(json_array_get(argv, i)), a) == 0 &&
        strcmp(json_string_value(json_array_get(argv, i + 1)), b) == 0)
      return 1;
  return 0;
}

static int count_ports(const json_t *argv) {
  int n = 0;
  for (size_t i = 0; i < json_array_size(argv); i++)
    if (strstr(json_string_value(json_array_get(argv, i)),
               "\"driver\":\"pcie-root-port\""))
      n++;
  return n;
}

int main(void) {
  orr_qemu_config cfg;
  orr_error e = {0, ""};
  json_t *argv, *layout, *pin, *doc;
  const char *d;
  char dir[] = "/tmp/orr-test-qmig-XXXXXX";
  ASSERT_NOT_NULL(mkdtemp(dir));
  doc = json_pack(
      "{s:s, s:{s:{s:{s:i}, s:{s:i}}, s:{s:{s:{}}, s:{s:{s:s, s:s}}}}}",
      "Owner", "t", "VirtualMachine", "ComputeTopology", "Memory", "SizeInMB",
      96, "Processor", "Count", 1, "Devices", "Scsi",
      "df6d0690-79e5-55b6-a5ec-c1e2f77f580a", "NetworkAdapters", NIC,
      "EndpointId", "user", "MacAddress", "00-15-5D-52-C0-0A");
  ASSERT_NOT_NULL(doc);
  /* The source's layout: scsi0 at rp0, balloon at rp1, rp2..rp16 free but
  ** rp17, where the NIC was hot-added, 20 ports in all. */
  pin = json_array();
  for (int i = 0; i < 20; i++) {
    char id[8];
    snprintf(id, sizeof id, "rp%d", i);
    json_array_append_new(pin, json_pack("{s:s, s:s?}", "id", id, "device",
                                         i == 0    ? "scsi0"
                                         : i == 1  ? "balloon0"
                                         : i == 17 ? "nic-" NIC
                                                   : NULL));
  }
  orr__qemu_config_init(&cfg);
  cfg.run_dir = dir;
  cfg.incoming = true;
  cfg.pin_ports = pin;
  cfg.memory_mb = 128; /* the source booted with 128, ballooned to 96 */
  ASSERT_OK(orr__qemu_argv(doc, &cfg, &argv, &layout, &e));
  ASSERT_NOT_NULL(d = device(argv, "nic-" NIC));
  ASSERT_NOT_NULL(strstr(d, "\"bus\":\"rp17\""));
  ASSERT_NOT_NULL(d = device(argv, "scsi0"));
  ASSERT_NOT_NULL(strstr(d, "\"bus\":\"rp0\""));
  ASSERT_NOT_NULL(d = device(argv, "balloon0"));
  ASSERT_NOT_NULL(strstr(d, "\"bus\":\"rp1\""));
  ASSERT_EQ(20, count_ports(argv));
  ASSERT(has(argv, "-incoming", "defer"));
  ASSERT(has(argv, "-m", "128M"));
  /* The layout is the source's again: the free ports stay free. */
  ASSERT_EQ(20, json_array_size(json_object_get(layout, "ports")));
  ASSERT_STR_EQ(
      "nic-" NIC,
      json_string_value(json_object_get(
          json_array_get(json_object_get(layout, "ports"), 17), "device")));
  ASSERT(json_is_null(json_object_get(
      json_array_get(json_object_get(layout, "ports"), 5), "device")));
  json_decref(argv);
  json_decref(layout);

  /* A device of the document the layout has no port for. */
  json_object_set_new(json_array_get(pin, 17), "device", json_null());
  ASSERT_ERR(orr__qemu_argv(doc, &cfg, &argv, &layout, &e), ORR_EINVAL);
  ASSERT_NOT_NULL(strstr(e.msg, "has no root port for nic-" NIC));
  ASSERT_NULL(argv);

  /* Without a pinned layout nothing changes: ports in order, no -incoming. */
  cfg.incoming = false;
  cfg.pin_ports = NULL;
  cfg.memory_mb = 0;
  ASSERT_OK(orr__qemu_argv(doc, &cfg, &argv, &layout, &e));
  ASSERT(!has(argv, "-incoming", "defer"));
  ASSERT(has(argv, "-m", "96M"));
  ASSERT_EQ(3 + ORR_QEMU_DEFAULT_HOTPLUG_PORTS, count_ports(argv));
  json_decref(argv);
  json_decref(layout);
  json_decref(pin);
  json_decref(doc);
  rmdir(dir);
  printf("ok - a received VM's argv keeps the source's ports\n");
  return 0;
}
