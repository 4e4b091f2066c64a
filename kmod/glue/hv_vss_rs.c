/*-
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * hv_vss_rs: the Hyper-V VSS (backup) integration service, with every
 * decision made by the Rust engine in libhv_vss_rs.a (kmod/ffi, kmod/src).
 *
 * This file only connects the engine to the kernel: the VMBus IC channel,
 * the two character devices, one mutex, one callout and the sysctls.  Each
 * entry point takes the mutex, calls the engine with the uptime in
 * milliseconds and returns; the engine calls back hvvss_glue_*() (below)
 * to send a reply, wake pollers, arm or stop the callout, or log.
 *
 * Driver "hvvss_rs", module "hv_vss_rs": distinct from the base driver
 * ("hvvss" in module "hv_vss").  Both drivers probe the one VSS channel;
 * newbus gives it to the higher probe value, and ours is BUS_PROBE_VENDOR
 * against the base driver's BUS_PROBE_DEFAULT (vmbus_ic_probe() in
 * sys/dev/hyperv/utilities/vmbus_ic.c), so loading this module at boot is
 * enough.  hint.hvvss_rs.0.disabled="1" leaves the channel to the base
 * driver.  A driver already attached keeps its device when the other
 * module is loaded later: devctl(8) moves it.  See hv_vss_rs(4).
 */

#include <sys/param.h>
#include <sys/systm.h>
#include <sys/bus.h>
#include <sys/callout.h>
#include <sys/conf.h>
#include <sys/fcntl.h>
#include <sys/filio.h>
#include <sys/kernel.h>
#include <sys/lock.h>
#include <sys/malloc.h>
#include <sys/module.h>
#include <sys/mutex.h>
#include <sys/poll.h>
#include <sys/selinfo.h>
#include <sys/sysctl.h>
#include <sys/syslog.h>
#include <sys/taskqueue.h>
#include <sys/time.h>

#include <dev/hyperv/include/hyperv.h>
#include <dev/hyperv/include/vmbus.h>
#include <dev/hyperv/utilities/vmbus_icvar.h>

#include "hv_vss_rs.h"
#include "vmbus_if.h"

/* The newbus names: the driver and devclass, and the base driver's. */
#define	HVVSS_RS_DRIVER		"hvvss_rs"
#define	HVVSS_BASE_DRIVER	"hvvss"

/* Defaults of the timeout_ms and rollback_timeout_ms sysctls. */
#define	HVVSS_RS_TIMEOUT_MS	15000
#define	HVVSS_RS_ROLLBACK_MS	5000

/* Room for the engine's counter names (sysctl keeps the pointers). */
#define	HVVSS_RS_MAXCOUNTERS	16
#define	HVVSS_RS_NAMELEN	32

/* At most one "cannot receive" line per this many seconds. */
#define	HVVSS_RS_RECV_LOG_SEC	60

static MALLOC_DEFINE(M_HVVSS_RS, "hv_vss_rs", "Hyper-V VSS engine");

struct hvvss_rs_softc {
	struct vmbus_ic_softc	 sc_ic;		/* must be first */
	device_t		 sc_dev;
	struct mtx		 sc_mtx;	/* engine and all below */
	struct callout		 sc_timer;	/* the one deadline */
	struct task		 sc_task;	/* drains the channel */
	struct hvvss_engine	*sc_engine;
	struct cdev		*sc_cdev[HVVSS_NDEVS];
	struct selinfo		 sc_sel[HVVSS_NDEVS];
	struct sysctl_ctx_list	 sc_sysctl;	/* ours, freed first */
	struct timeval		 sc_recv_logged; /* ratecheck(9) */
	int			 sc_recv_errors; /* since the last line */
	int			 sc_log;	/* sysctl log */
	bool			 sc_detaching;
	char			 sc_counter_name[HVVSS_RS_MAXCOUNTERS]
				    [HVVSS_RS_NAMELEN];
};

static d_open_t		hvvss_rs_open;
static d_ioctl_t	hvvss_rs_ioctl;
static d_poll_t		hvvss_rs_poll;

/*
 * No d_close: without D_TRACKCLOSE devfs calls it only when it counts no
 * other reference to the device, and a concurrent open(2) (even one about
 * to fail with EBUSY) or a lookup holds one, so the holder's close could be
 * missed and the device stay "open" forever.  Each successful open instead
 * gets a cdevpriv whose destructor runs exactly once: when the last
 * descriptor of that open file goes away, or in destroy_dev() at detach
 * (devfs_close_f() and destroy_devl() in sys/fs/devfs/devfs_vnops.c and
 * sys/kern/kern_conf.c).
 */
static struct cdevsw hvvss_rs_cdevsw = {
	.d_version =	D_VERSION,
	.d_open =	hvvss_rs_open,
	.d_ioctl =	hvvss_rs_ioctl,
	.d_poll =	hvvss_rs_poll,
	.d_name =	"hv_vss_rs",
};

/* What the cdevpriv destructor needs: which device of which softc. */
struct hvvss_rs_holder {
	struct hvvss_rs_softc	*h_sc;
	int			 h_dev;
};

/* Why the module's driver has no device, for hvvss_rs_report(). */
static int hvvss_rs_attach_error;

/* The engine's clock: uptime in milliseconds. */
static uint64_t
hvvss_rs_now_ms(void)
{

	return ((uint64_t)(sbinuptime() / SBT_1MS));
}

/* ----- callbacks from the engine (mutex held) ----- */

void
hvvss_glue_send(void *ctx, uint64_t xid, const uint8_t *reply, size_t len)
{
	struct hvvss_rs_softc *sc = ctx;
	int error;

	mtx_assert(&sc->sc_mtx, MA_OWNED);
	error = vmbus_chan_send(vmbus_get_channel(sc->sc_dev),
	    VMBUS_CHANPKT_TYPE_INBAND, 0, __DECONST(uint8_t *, reply),
	    (int)len, xid);
	if (error != 0)
		device_printf(sc->sc_dev, "reply to the host failed: %d\n",
		    error);
}

void
hvvss_glue_wake(void *ctx, int dev)
{
	struct hvvss_rs_softc *sc = ctx;

	mtx_assert(&sc->sc_mtx, MA_OWNED);
	if (dev >= 0 && dev < HVVSS_NDEVS)
		selwakeup(&sc->sc_sel[dev]);
}

static void
hvvss_rs_timeout(void *arg)
{
	struct hvvss_rs_softc *sc = arg;

	/* callout_init_mtx(): runs with sc_mtx held. */
	mtx_assert(&sc->sc_mtx, MA_OWNED);
	hvvss_engine_timer(sc->sc_engine, sc, hvvss_rs_now_ms());
}

void
hvvss_glue_timer_arm(void *ctx, uint64_t at_ms)
{
	struct hvvss_rs_softc *sc = ctx;

	mtx_assert(&sc->sc_mtx, MA_OWNED);
	callout_reset_sbt(&sc->sc_timer, (sbintime_t)at_ms * SBT_1MS, 0,
	    hvvss_rs_timeout, sc, C_ABSOLUTE);
}

void
hvvss_glue_timer_cancel(void *ctx)
{
	struct hvvss_rs_softc *sc = ctx;

	/* With sc_mtx held, a callout that has not started will not run. */
	mtx_assert(&sc->sc_mtx, MA_OWNED);
	callout_stop(&sc->sc_timer);
}

void
hvvss_glue_log(void *ctx, int level, const char *line)
{
	struct hvvss_rs_softc *sc = ctx;

	if (level <= sc->sc_log)
		log(level == HVVSS_LOG_ERROR ? LOG_WARNING : LOG_INFO,
		    "%s: %s\n", device_get_nameunit(sc->sc_dev), line);
}

/* ----- the VMBus channel ----- */

/* A receive error, logged at most once a minute with the count. */
static void
hvvss_rs_recv_failed(struct hvvss_rs_softc *sc, int error)
{
	static const struct timeval interval = {
		.tv_sec = HVVSS_RS_RECV_LOG_SEC
	};

	mtx_assert(&sc->sc_mtx, MA_OWNED);
	sc->sc_recv_errors++;
	if (!ratecheck(&sc->sc_recv_logged, &interval))
		return;
	device_printf(sc->sc_dev, "cannot receive from the host: %d "
	    "(%d times since the last report; the channel is unusable "
	    "until the module is reloaded)\n", error, sc->sc_recv_errors);
	sc->sc_recv_errors = 0;
}

static void
hvvss_rs_task(void *arg, int pending __unused)
{
	struct hvvss_rs_softc *sc = arg;
	struct vmbus_channel *chan;
	uint64_t xid;
	int error, len;

	chan = vmbus_get_channel(sc->sc_dev);
	for (;;) {
		mtx_lock(&sc->sc_mtx);
		if (sc->sc_detaching) {
			mtx_unlock(&sc->sc_mtx);
			return;
		}
		len = sc->sc_ic.ic_buflen;
		error = vmbus_chan_recv(chan, sc->sc_ic.ic_buf, &len, &xid);
		if (error != 0) {
			/*
			 * Otherwise the ring is empty.  ENOBUFS cannot happen
			 * (the buffer is as large as the ring); EIO is a
			 * corrupt packet header, which stays in the ring, so
			 * every later interrupt meets it again.
			 */
			if (error == ENOBUFS || error == EIO)
				hvvss_rs_recv_failed(sc, error);
			mtx_unlock(&sc->sc_mtx);
			return;
		}
		hvvss_engine_host_packet(sc->sc_engine, sc, sc->sc_ic.ic_buf,
		    (size_t)len, xid, hvvss_rs_now_ms());
		hvvss_engine_versions(sc->sc_engine, &sc->sc_ic.ic_fwver,
		    &sc->sc_ic.ic_msgver);
		mtx_unlock(&sc->sc_mtx);
	}
}

static void
hvvss_rs_channel_cb(struct vmbus_channel *chan __unused, void *arg)
{
	struct hvvss_rs_softc *sc = arg;

	taskqueue_enqueue(taskqueue_thread, &sc->sc_task);
}

/* ----- the character devices ----- */

/* The engine's last close of one device, once per successful open. */
static void
hvvss_rs_release(struct hvvss_rs_softc *sc, int dev)
{

	mtx_lock(&sc->sc_mtx);
	hvvss_engine_close(sc->sc_engine, sc, dev, hvvss_rs_now_ms());
	mtx_unlock(&sc->sc_mtx);
}

/* cdevpriv destructor: the holder's open file is gone. */
static void
hvvss_rs_holder_gone(void *arg)
{
	struct hvvss_rs_holder *holder = arg;

	hvvss_rs_release(holder->h_sc, holder->h_dev);
	free(holder, M_HVVSS_RS);
}

static int
hvvss_rs_open(struct cdev *cdev, int oflags, int devtype __unused,
    struct thread *td __unused)
{
	struct hvvss_rs_softc *sc = cdev->si_drv1;
	struct hvvss_rs_holder *holder;
	int error, result;

	/*
	 * Answering takes a descriptor open for reading and writing; the
	 * 0640 mode leaves that to root.  A read-only opener (group wheel)
	 * could otherwise hold the device and stall every backup.
	 */
	if ((oflags & (FREAD | FWRITE)) != (FREAD | FWRITE))
		return (EPERM);
	mtx_lock(&sc->sc_mtx);
	result = hvvss_engine_open(sc->sc_engine, dev2unit(cdev));
	mtx_unlock(&sc->sc_mtx);
	switch (result) {
	case HVVSS_OK:
		break;
	case HVVSS_BUSY:
		return (EBUSY);
	default:
		return (EINVAL);
	}
	holder = malloc(sizeof(*holder), M_HVVSS_RS, M_WAITOK);
	holder->h_sc = sc;
	holder->h_dev = dev2unit(cdev);
	error = devfs_set_cdevpriv(holder, hvvss_rs_holder_gone);
	if (error != 0) {
		/* Not an open(2) of a file (no cdevpriv): undo. */
		free(holder, M_HVVSS_RS);
		hvvss_rs_release(sc, dev2unit(cdev));
	}
	return (error);
}

static int
hvvss_rs_ioctl(struct cdev *cdev, u_long cmd, caddr_t data,
    int fflag __unused, struct thread *td __unused)
{
	struct hvvss_rs_softc *sc = cdev->si_drv1;
	int result;

	/* fcntl(2) O_NONBLOCK/O_ASYNC: IOCHVVSSREAD never blocks anyway. */
	if (cmd == FIONBIO || cmd == FIOASYNC)
		return (0);
	mtx_lock(&sc->sc_mtx);
	result = hvvss_engine_ioctl(sc->sc_engine, sc, dev2unit(cdev), cmd,
	    data, hvvss_rs_now_ms());
	mtx_unlock(&sc->sc_mtx);
	switch (result) {
	case HVVSS_OK:
		return (0);
	case HVVSS_UNKNOWN_IOCTL:
		return (ENOTTY);
	default:
		return (EINVAL);
	}
}

static int
hvvss_rs_poll(struct cdev *cdev, int events, struct thread *td)
{
	struct hvvss_rs_softc *sc = cdev->si_drv1;
	int revents, unit;

	revents = 0;
	unit = dev2unit(cdev);
	mtx_lock(&sc->sc_mtx);
	if ((events & (POLLIN | POLLRDNORM)) != 0) {
		if (hvvss_engine_readable(sc->sc_engine, unit))
			revents = events & (POLLIN | POLLRDNORM);
		else
			selrecord(td, &sc->sc_sel[unit]);
	}
	mtx_unlock(&sc->sc_mtx);
	return (revents);
}

static int
hvvss_rs_make_dev(struct hvvss_rs_softc *sc, int unit)
{
	struct make_dev_args args;

	make_dev_args_init(&args);
	/* CHECKNAME: fail (EEXIST) rather than panic if the names exist. */
	args.mda_flags = MAKEDEV_CHECKNAME | MAKEDEV_WAITOK;
	args.mda_devsw = &hvvss_rs_cdevsw;
	args.mda_uid = UID_ROOT;
	args.mda_gid = GID_WHEEL;
	args.mda_mode = 0640;
	args.mda_unit = unit;
	args.mda_si_drv1 = sc;
	return (make_dev_s(&args, &sc->sc_cdev[unit], "%s",
	    hvvss_engine_device_name(unit)));
}

/* ----- sysctls ----- */

static int
hvvss_rs_sysctl_timeout(SYSCTL_HANDLER_ARGS)
{
	struct hvvss_rs_softc *sc = arg1;
	unsigned int chain, rollback, value;
	int error;

	mtx_lock(&sc->sc_mtx);
	value = hvvss_engine_timeout(sc->sc_engine, (int)arg2);
	mtx_unlock(&sc->sc_mtx);
	error = sysctl_handle_int(oidp, &value, 0, req);
	if (error != 0 || req->newptr == NULL)
		return (error);
	mtx_lock(&sc->sc_mtx);
	chain = hvvss_engine_timeout(sc->sc_engine, HVVSS_TIMEOUT_CHAIN);
	rollback = hvvss_engine_timeout(sc->sc_engine,
	    HVVSS_TIMEOUT_ROLLBACK);
	if (arg2 == HVVSS_TIMEOUT_CHAIN)
		chain = value;
	else
		rollback = value;
	if (hvvss_engine_set_timeouts(sc->sc_engine, chain, rollback) !=
	    HVVSS_OK)
		error = EINVAL;
	mtx_unlock(&sc->sc_mtx);
	return (error);
}

static int
hvvss_rs_sysctl_counter(SYSCTL_HANDLER_ARGS)
{
	struct hvvss_rs_softc *sc = arg1;
	uint64_t value;

	mtx_lock(&sc->sc_mtx);
	value = hvvss_engine_counter(sc->sc_engine, (int)arg2);
	mtx_unlock(&sc->sc_mtx);
	return (sysctl_handle_64(oidp, &value, 0, req));
}

static int
hvvss_rs_sysctl_last_result(SYSCTL_HANDLER_ARGS)
{
	struct hvvss_rs_softc *sc = arg1;
	char result[128];

	mtx_lock(&sc->sc_mtx);
	hvvss_engine_last_result(sc->sc_engine, result, sizeof(result));
	mtx_unlock(&sc->sc_mtx);
	return (sysctl_handle_string(oidp, result, sizeof(result), req));
}

static void
hvvss_rs_add_sysctls(struct hvvss_rs_softc *sc)
{
	struct sysctl_ctx_list *ctx;
	struct sysctl_oid_list *child, *stats;
	struct sysctl_oid *node;
	int i, n;

	/*
	 * Our own context, not the device's: newbus frees the device's only
	 * after DEVICE_DETACH returned, when the engine and the mutex these
	 * handlers take are gone.  sysctl_ctx_free() first in detach waits
	 * for running handlers and removes ours.
	 */
	ctx = &sc->sc_sysctl;
	sysctl_ctx_init(ctx);
	child = SYSCTL_CHILDREN(device_get_sysctl_tree(sc->sc_dev));
	SYSCTL_ADD_INT(ctx, child, OID_AUTO, "log", CTLFLAG_RWTUN,
	    &sc->sc_log, 0,
	    "Log level: 0 none, 1 errors, 2 requests, 3 every step");
	SYSCTL_ADD_PROC(ctx, child, OID_AUTO, "timeout_ms",
	    CTLTYPE_UINT | CTLFLAG_RWTUN | CTLFLAG_MPSAFE, sc,
	    HVVSS_TIMEOUT_CHAIN, hvvss_rs_sysctl_timeout, "IU",
	    "Deadline of one host request, app and daemon together (ms)");
	SYSCTL_ADD_PROC(ctx, child, OID_AUTO, "rollback_timeout_ms",
	    CTLTYPE_UINT | CTLFLAG_RWTUN | CTLFLAG_MPSAFE, sc,
	    HVVSS_TIMEOUT_ROLLBACK, hvvss_rs_sysctl_timeout, "IU",
	    "Time given to the rollback THAW after a failure (ms)");
	SYSCTL_ADD_PROC(ctx, child, OID_AUTO, "last_result",
	    CTLTYPE_STRING | CTLFLAG_RD | CTLFLAG_MPSAFE, sc, 0,
	    hvvss_rs_sysctl_last_result, "A",
	    "Outcome of the last CHECK, FREEZE or THAW");

	node = SYSCTL_ADD_NODE(ctx, child, OID_AUTO, "stats",
	    CTLFLAG_RD | CTLFLAG_MPSAFE, NULL, "Counters since attach");
	stats = SYSCTL_CHILDREN(node);
	n = MIN(hvvss_engine_ncounters(), HVVSS_RS_MAXCOUNTERS);
	for (i = 0; i < n; i++) {
		hvvss_engine_counter_name(i, sc->sc_counter_name[i],
		    sizeof(sc->sc_counter_name[i]));
		SYSCTL_ADD_PROC(ctx, stats, OID_AUTO, sc->sc_counter_name[i],
		    CTLTYPE_U64 | CTLFLAG_RD | CTLFLAG_MPSAFE, sc, i,
		    hvvss_rs_sysctl_counter, "QU", "see hv_vss_rs(4)");
	}
}

/* ----- newbus ----- */

/*
 * vmbus_ic_probe() would answer BUS_PROBE_DEFAULT, a tie with the base
 * driver that newbus settles for whichever driver registered first.  So
 * the same two checks, by hand, with BUS_PROBE_VENDOR.
 */
static int
hvvss_rs_probe(device_t dev)
{
	struct hyperv_guid guid;

	if (resource_disabled(device_get_name(dev), device_get_unit(dev)))
		return (ENXIO);
	hvvss_engine_class_guid(guid.hv_guid);
	if (VMBUS_PROBE_GUID(device_get_parent(dev), dev, &guid) != 0)
		return (ENXIO);
	device_set_desc(dev, "Hyper-V VSS (hyperv-vss)");
	return (BUS_PROBE_VENDOR);
}

static void
hvvss_rs_destroy_devs(struct hvvss_rs_softc *sc)
{
	int i;

	/* Waits for threads inside our cdev methods; no new ones enter. */
	for (i = 0; i < HVVSS_NDEVS; i++) {
		if (sc->sc_cdev[i] != NULL) {
			destroy_dev(sc->sc_cdev[i]);
			sc->sc_cdev[i] = NULL;
		}
	}
}

static void
hvvss_rs_free(struct hvvss_rs_softc *sc)
{
	int i;

	callout_drain(&sc->sc_timer);
	for (i = 0; i < HVVSS_NDEVS; i++)
		seldrain(&sc->sc_sel[i]);
	free(sc->sc_engine, M_HVVSS_RS);
	sc->sc_engine = NULL;
	mtx_destroy(&sc->sc_mtx);
}

static int
hvvss_rs_attach(device_t dev)
{
	struct hvvss_rs_softc *sc = device_get_softc(dev);
	int error, i;

	sc->sc_dev = dev;
	sc->sc_log = HVVSS_LOG_ERROR;
	mtx_init(&sc->sc_mtx, "hv_vss_rs", NULL, MTX_DEF);
	callout_init_mtx(&sc->sc_timer, &sc->sc_mtx, 0);
	TASK_INIT(&sc->sc_task, 0, hvvss_rs_task, sc);

	/* Once, here: the engine never allocates afterwards. */
	sc->sc_engine = malloc(hvvss_engine_size(), M_HVVSS_RS,
	    M_WAITOK | M_ZERO);
	KASSERT(((uintptr_t)sc->sc_engine & (hvvss_engine_align() - 1)) == 0,
	    ("hv_vss_rs: engine memory misaligned"));
	hvvss_engine_init(sc->sc_engine, HVVSS_RS_TIMEOUT_MS,
	    HVVSS_RS_ROLLBACK_MS,
	    ((uint64_t)arc4random() << 32) | arc4random());
	hvvss_rs_add_sysctls(sc);

	for (i = 0; i < HVVSS_NDEVS; i++) {
		error = hvvss_rs_make_dev(sc, i);
		if (error != 0) {
			device_printf(dev, "cannot create /dev/%s: %d\n",
			    hvvss_engine_device_name(i), error);
			goto fail;
		}
	}
	error = vmbus_ic_attach(dev, hvvss_rs_channel_cb);
	if (error != 0) {
		device_printf(dev, "cannot open the VMBus channel: %d\n",
		    error);
		goto fail;
	}
	hvvss_rs_attach_error = 0;
	return (0);
fail:
	sysctl_ctx_free(&sc->sc_sysctl);
	hvvss_rs_destroy_devs(sc);
	hvvss_rs_free(sc);
	hvvss_rs_attach_error = error;
	return (error);
}

static int
hvvss_rs_detach(device_t dev)
{
	struct hvvss_rs_softc *sc = device_get_softc(dev);

	/* No sysctl handler runs past this point, or starts. */
	sysctl_ctx_free(&sc->sc_sysctl);
	/* Runs the destructor of each open: the engine sees the closes. */
	hvvss_rs_destroy_devs(sc);

	/* Stop reading the ring, and let a running drain finish. */
	mtx_lock(&sc->sc_mtx);
	sc->sc_detaching = true;
	mtx_unlock(&sc->sc_mtx);
	taskqueue_drain(taskqueue_thread, &sc->sc_task);

	/* Answer a request in progress while the channel is still open. */
	mtx_lock(&sc->sc_mtx);
	hvvss_engine_shutdown(sc->sc_engine, sc);
	mtx_unlock(&sc->sc_mtx);

	vmbus_ic_detach(dev);
	taskqueue_drain(taskqueue_thread, &sc->sc_task);
	hvvss_rs_free(sc);
	return (0);
}

static device_method_t hvvss_rs_methods[] = {
	DEVMETHOD(device_probe,		hvvss_rs_probe),
	DEVMETHOD(device_attach,	hvvss_rs_attach),
	DEVMETHOD(device_detach,	hvvss_rs_detach),
	DEVMETHOD_END
};

static driver_t hvvss_rs_driver = {
	HVVSS_RS_DRIVER,
	hvvss_rs_methods,
	sizeof(struct hvvss_rs_softc)
};

/*
 * Say in dmesg why the module is loaded but has no device.  A SYSINIT of
 * the module's own runs after its DRIVER_MODULE (SI_SUB_DRIVERS), which
 * probes existing channels at kldload; at boot it runs after vmbus has
 * attached the devices of the host's first offers (vmbus_scan() waits for
 * them, sys/dev/hyperv/vmbus/vmbus.c).
 */
static void
hvvss_rs_report(void *arg __unused)
{
	devclass_t dc;
	device_t base, ours;

	bus_topo_lock();
	dc = devclass_find(HVVSS_RS_DRIVER);
	ours = dc != NULL ? devclass_get_device(dc, 0) : NULL;
	dc = devclass_find(HVVSS_BASE_DRIVER);
	base = dc != NULL ? devclass_get_device(dc, 0) : NULL;
	if (ours != NULL && device_is_attached(ours)) {
		/* Attached: its attach line said so. */
	} else if (resource_disabled(HVVSS_RS_DRIVER, 0)) {
		printf("hv_vss_rs: loaded, not attached: disabled by "
		    "hint.%s.0.disabled\n", HVVSS_RS_DRIVER);
	} else if (base != NULL && device_is_attached(base)) {
		printf("hv_vss_rs: loaded, not attached: the base driver %s "
		    "has the VSS channel; to switch: devctl set driver -f %s "
		    "%s (hv_vss_rs(4))\n", device_get_nameunit(base),
		    device_get_nameunit(base), HVVSS_RS_DRIVER);
	} else if (hvvss_rs_attach_error != 0) {
		printf("hv_vss_rs: loaded, not attached: attach failed "
		    "with error %d (see above)\n", hvvss_rs_attach_error);
	} else {
		printf("hv_vss_rs: loaded, not attached: no Hyper-V VSS "
		    "channel (not a Hyper-V guest, or the host's Backup "
		    "integration service is off)\n");
	}
	bus_topo_unlock();
}
SYSINIT(hvvss_rs_report, SI_SUB_LAST, SI_ORDER_ANY, hvvss_rs_report, NULL);

DRIVER_MODULE(hv_vss_rs, vmbus, hvvss_rs_driver, NULL, NULL);
MODULE_VERSION(hv_vss_rs, 1);
MODULE_DEPEND(hv_vss_rs, vmbus, 1, 1, 1);
/*
 * vmbus_ic_attach() and vmbus_ic_detach() live in hv_utils.ko when hyperv
 * is built as modules (sys/modules/hyperv/utilities: vmbus_ic.c next to
 * hv_snapshot.c, whose module is "hv_vss").  The kernel linker resolves a
 * module's symbols only from the kernel and its dependencies, so depend on
 * hv_vss: loader(8) and kldload(8) then load hv_utils.ko first, and with
 * `device hyperv` in the kernel (GENERIC) the dependency is already met.
 */
MODULE_DEPEND(hv_vss_rs, hv_vss, 1, 1, 1);
