/* Compile-check aid (see README): what `make` generates from sys/dev/hyperv/vmbus/vmbus_if.m. */
#ifndef _vmbus_if_h_
#define	_vmbus_if_h_
struct hyperv_guid;
extern struct kobjop_desc vmbus_probe_guid_desc;
typedef int vmbus_probe_guid_t(device_t bus, device_t dev,
    const struct hyperv_guid *guid);
static __inline int
VMBUS_PROBE_GUID(device_t bus, device_t dev, const struct hyperv_guid *guid)
{
	kobjop_t _m;
	int rc;
	KOBJOPLOOKUP(((kobj_t)bus)->ops, vmbus_probe_guid);
	rc = ((vmbus_probe_guid_t *) _m)(bus, dev, guid);
	return (rc);
}
#endif
