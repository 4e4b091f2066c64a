/* Compile-check aid (see ../../../README): from sys/dev/hyperv/include/hyperv.h. */
#ifndef _HYPERV_H_
#define	_HYPERV_H_
#include <sys/param.h>
struct hyperv_guid {
	uint8_t		hv_guid[16];
} __packed;
#endif
