/* Compile-check aid (see README): what `make` generates from sys/kern/bus_if.m (nothing of it is used here). */
#ifndef _bus_if_h_
#define	_bus_if_h_
#endif
