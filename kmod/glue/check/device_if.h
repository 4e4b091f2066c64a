/* Compile-check aid (see README): what `make` generates from sys/kern/device_if.m. */
#ifndef _device_if_h_
#define	_device_if_h_
extern struct kobjop_desc device_probe_desc;
typedef int device_probe_t(device_t dev);
extern struct kobjop_desc device_attach_desc;
typedef int device_attach_t(device_t dev);
extern struct kobjop_desc device_detach_desc;
typedef int device_detach_t(device_t dev);
#endif
