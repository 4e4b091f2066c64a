/* Compile-check aid (see ../../../README): from sys/dev/hyperv/include/vmbus.h. */
#ifndef _VMBUS_H_
#define	_VMBUS_H_
#include <sys/param.h>
#include <sys/bus.h>
#define	VMBUS_CHANPKT_TYPE_INBAND	0x0006
struct vmbus_channel;
typedef void	(*vmbus_chan_callback_t)(struct vmbus_channel *, void *);
static __inline struct vmbus_channel *
vmbus_get_channel(device_t dev)
{
	return (device_get_ivars(dev));
}
int	vmbus_chan_recv(struct vmbus_channel *chan, void *data, int *dlen,
	    uint64_t *xactid);
int	vmbus_chan_send(struct vmbus_channel *chan, uint16_t type,
	    uint16_t flags, void *data, int dlen, uint64_t xactid);
#endif
