/*-
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * The C ABI between the glue (hv_vss_rs.c) and the Rust engine
 * (kmod/ffi/src/lib.rs, built as libhv_vss_rs.a).  This header is the only
 * place the two meet; every decision lives on the Rust side.
 *
 * Contract for every hvvss_engine_*() call: the engine was set up by
 * hvvss_engine_init() in memory of hvvss_engine_size() bytes aligned to
 * hvvss_engine_align(), and the caller holds the softc mutex.  The engine
 * calls the hvvss_glue_*() functions back synchronously, with that mutex
 * still held, passing the ctx it was given (the softc).
 */

#ifndef _HV_VSS_RS_H_
#define	_HV_VSS_RS_H_

/* Device indices: the unit numbers of the two character devices. */
#define	HVVSS_DEV_FS		0	/* hv_fsvss_dev */
#define	HVVSS_DEV_APP		1	/* hv_appvss_dev */
#define	HVVSS_NDEVS		2

/* Results of hvvss_engine_open() and hvvss_engine_ioctl(). */
#define	HVVSS_OK		0
#define	HVVSS_BUSY		1	/* second opener: EBUSY */
#define	HVVSS_INVALID		2	/* bad arguments: EINVAL */
#define	HVVSS_UNKNOWN_IOCTL	3	/* not ours: ENOTTY */

/* Log levels passed to hvvss_glue_log(), compared with the log sysctl. */
#define	HVVSS_LOG_ERROR		1
#define	HVVSS_LOG_NOTICE	2
#define	HVVSS_LOG_DEBUG		3

/* hvvss_engine_timeout() selectors. */
#define	HVVSS_TIMEOUT_CHAIN	0
#define	HVVSS_TIMEOUT_ROLLBACK	1

struct hvvss_engine;		/* opaque; Rust owns its layout */

/* Implemented in Rust. */
size_t	hvvss_engine_size(void);
size_t	hvvss_engine_align(void);
int	hvvss_engine_ncounters(void);
void	hvvss_engine_init(struct hvvss_engine *, unsigned int timeout_ms,
	    unsigned int rollback_timeout_ms, uint64_t msgid_seed);
void	hvvss_engine_host_packet(struct hvvss_engine *, void *ctx,
	    const uint8_t *packet, size_t len, uint64_t xid, uint64_t now_ms);
void	hvvss_engine_timer(struct hvvss_engine *, void *ctx,
	    uint64_t now_ms);
void	hvvss_engine_shutdown(struct hvvss_engine *, void *ctx);
int	hvvss_engine_open(struct hvvss_engine *, int dev);
void	hvvss_engine_close(struct hvvss_engine *, void *ctx, int dev,
	    uint64_t now_ms);
int	hvvss_engine_readable(const struct hvvss_engine *, int dev);
int	hvvss_engine_ioctl(struct hvvss_engine *, void *ctx, int dev,
	    u_long cmd, void *data, uint64_t now_ms);
int	hvvss_engine_set_timeouts(struct hvvss_engine *,
	    unsigned int timeout_ms, unsigned int rollback_timeout_ms);
unsigned int hvvss_engine_timeout(const struct hvvss_engine *, int which);
uint64_t hvvss_engine_counter(const struct hvvss_engine *, int index);
size_t	hvvss_engine_counter_name(int index, char *out, size_t out_len);
size_t	hvvss_engine_last_result(const struct hvvss_engine *, char *out,
	    size_t out_len);
void	hvvss_engine_versions(const struct hvvss_engine *, uint32_t *fw,
	    uint32_t *msg);
const char *hvvss_engine_device_name(int dev);
void	hvvss_engine_class_guid(uint8_t out[16]);

/* Implemented by the glue, called by the engine with the mutex held. */
void	hvvss_glue_send(void *ctx, uint64_t xid, const uint8_t *reply,
	    size_t len);
void	hvvss_glue_wake(void *ctx, int dev);
void	hvvss_glue_timer_arm(void *ctx, uint64_t at_ms);
void	hvvss_glue_timer_cancel(void *ctx);
void	hvvss_glue_log(void *ctx, int level, const char *line);

#endif /* !_HV_VSS_RS_H_ */
