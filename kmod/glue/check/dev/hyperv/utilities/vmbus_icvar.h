/* Compile-check aid (see ../../../README): from sys/dev/hyperv/utilities/vmbus_icvar.h. */
#ifndef _VMBUS_ICVAR_H_
#define	_VMBUS_ICVAR_H_
#include <dev/hyperv/include/hyperv.h>
#include <dev/hyperv/include/vmbus.h>
struct vmbus_ic_softc {
	device_t		ic_dev;
	uint8_t			*ic_buf;
	int			ic_buflen;
	uint32_t		ic_fwver;
	uint32_t		ic_msgver;
};
struct vmbus_ic_desc {
	const struct hyperv_guid	ic_guid;
	const char			*ic_desc;
};
#define	VMBUS_IC_DESC_END	{ .ic_desc = NULL }
int	vmbus_ic_attach(device_t dev, vmbus_chan_callback_t cb);
int	vmbus_ic_detach(device_t dev);
int	vmbus_ic_probe(device_t dev, const struct vmbus_ic_desc descs[]);
#endif
