//! The WASI calls Envoy answers for Proxy-Wasm modules, under both
//! `wasi_snapshot_preview1` and `wasi_unstable`, answered the way Envoy
//! answers them: stdout and stderr become logs, clocks are the host's
//! (manual) clocks, the environment is the VM's, and there is no
//! filesystem. Everything else answers with the errno Envoy 1.40 gives
//! (proxy-wasm-cpp-host's `wasi_*` functions).

use super::Guest;
use crate::types::Status;

/// The WASI imports for [`crate::runtime`]'s wasm front end, registered
/// under `wasi_snapshot_preview1` and `wasi_unstable` (natively a filter
/// has the real OS). Parameters: `u32` for wasm's `i32`, `u64` for `i64`.
/// `proc_exit` returns nothing and is registered on its own.
macro_rules! table {
    ($register:ident!($($args:tt)*)) => {
        $register! {
            $($args)*;
            fd_write(fd: u32, iovs: u32, count: u32, ret: u32) => $crate::hostcalls::wasi::fd_write;
            fd_pwrite(fd: u32, iovs: u32, count: u32, offset: u64, ret: u32) => $crate::hostcalls::wasi::fd_pwrite;
            fd_fdstat_get(fd: u32, ret: u32) => $crate::hostcalls::wasi::fd_fdstat_get;
            fd_tell(fd: u32, ret: u32) => $crate::hostcalls::wasi::fd_tell;
            environ_get(ptrs: u32, buf: u32) => $crate::hostcalls::wasi::environ_get;
            environ_sizes_get(count: u32, size: u32) => $crate::hostcalls::wasi::environ_sizes_get;
            args_get(ptrs: u32, buf: u32) => $crate::hostcalls::wasi::args_get;
            args_sizes_get(count: u32, size: u32) => $crate::hostcalls::wasi::args_sizes_get;
            clock_time_get(clock: u32, precision: u64, ret: u32) => $crate::hostcalls::wasi::clock_time_get;
            clock_res_get(clock: u32, ret: u32) => $crate::hostcalls::wasi::clock_res_get;
            random_get(buf: u32, len: u32) => $crate::hostcalls::wasi::random_get;
            poll_oneoff(input: u32, output: u32, count: u32, ret: u32) => $crate::hostcalls::wasi::poll_oneoff;
            sched_yield() => $crate::hostcalls::wasi::sched_yield;
            fd_read(fd: u32, iovs: u32, count: u32, ret: u32) => $crate::hostcalls::wasi::fd_read;
            fd_pread(fd: u32, iovs: u32, count: u32, offset: u64, ret: u32) => $crate::hostcalls::wasi::fd_pread;
            fd_seek(fd: u32, offset: u64, whence: u32, ret: u32) => $crate::hostcalls::wasi::fd_seek;
            fd_close(fd: u32) => $crate::hostcalls::wasi::fd_close;
            fd_fdstat_set_flags(fd: u32, flags: u32) => $crate::hostcalls::wasi::fd_fdstat_set_flags;
            fd_prestat_get(fd: u32, ret: u32) => $crate::hostcalls::wasi::fd_prestat_get;
            fd_prestat_dir_name(fd: u32, path: u32, len: u32) => $crate::hostcalls::wasi::fd_prestat_dir_name;
            fd_filestat_get(fd: u32, ret: u32) => $crate::hostcalls::wasi::fd_filestat_get;
            fd_advise(fd: u32, offset: u64, len: u64, advice: u32) => $crate::hostcalls::wasi::fd_advise;
            fd_allocate(fd: u32, offset: u64, len: u64) => $crate::hostcalls::wasi::fd_allocate;
            fd_datasync(fd: u32) => $crate::hostcalls::wasi::fd_sync;
            fd_sync(fd: u32) => $crate::hostcalls::wasi::fd_sync;
            fd_fdstat_set_rights(fd: u32, base: u64, inheriting: u64) => $crate::hostcalls::wasi::fd_fdstat_set_rights;
            fd_filestat_set_size(fd: u32, size: u64) => $crate::hostcalls::wasi::fd_filestat_set_size;
            fd_filestat_set_times(fd: u32, atime: u64, mtime: u64, flags: u32) => $crate::hostcalls::wasi::fd_filestat_set_times;
            fd_renumber(fd: u32, to: u32) => $crate::hostcalls::wasi::fd_renumber;
            fd_readdir(fd: u32, buf: u32, len: u32, cookie: u64, ret: u32) => $crate::hostcalls::wasi::fd_readdir;
            path_open(fd: u32, dirflags: u32, path: u32, path_len: u32, oflags: u32, base: u64, inheriting: u64, fdflags: u32, ret: u32) => $crate::hostcalls::wasi::path_open;
            path_filestat_get(fd: u32, flags: u32, path: u32, path_len: u32, ret: u32) => $crate::hostcalls::wasi::path_filestat_get;
            path_create_directory(fd: u32, path: u32, path_len: u32) => $crate::hostcalls::wasi::path_change;
            path_remove_directory(fd: u32, path: u32, path_len: u32) => $crate::hostcalls::wasi::path_change;
            path_unlink_file(fd: u32, path: u32, path_len: u32) => $crate::hostcalls::wasi::path_change;
            path_rename(fd: u32, path: u32, path_len: u32, to_fd: u32, to: u32, to_len: u32) => $crate::hostcalls::wasi::path_rename;
            path_filestat_set_times(fd: u32, flags: u32, path: u32, path_len: u32, atime: u64, mtime: u64, fst_flags: u32) => $crate::hostcalls::wasi::path_filestat_set_times;
            path_readlink(fd: u32, path: u32, path_len: u32, buf: u32, buf_len: u32, ret: u32) => $crate::hostcalls::wasi::path_readlink;
            path_link(fd: u32, flags: u32, path: u32, path_len: u32, to_fd: u32, to: u32) => $crate::hostcalls::wasi::path_link;
            path_symlink(path: u32, path_len: u32, fd: u32, to: u32) => $crate::hostcalls::wasi::path_symlink;
            sock_accept(fd: u32, flags: u32, ret: u32) => $crate::hostcalls::wasi::sock_accept;
            sock_recv(fd: u32, iovs: u32, count: u32, flags: u32, ret_size: u32, ret_flags: u32) => $crate::hostcalls::wasi::sock_recv;
            sock_send(fd: u32, iovs: u32, count: u32, flags: u32, ret: u32) => $crate::hostcalls::wasi::sock_send;
            sock_shutdown(fd: u32, how: u32) => $crate::hostcalls::wasi::sock_shutdown;
        }
    };
}
pub(crate) use table;

/// The other `env` imports Envoy gives C++ (Emscripten) modules, with
/// `i32` results; `emscripten_notify_memory_growth` returns nothing and is
/// registered on its own.
macro_rules! emscripten_table {
    ($register:ident!($($args:tt)*)) => {
        $register! {
            $($args)*;
            pthread_equal(a: u32, b: u32) => $crate::hostcalls::wasi::pthread_equal;
            envoy_resolve_dns(name: u32, name_len: u32, ret: u32) => $crate::hostcalls::wasi::envoy_resolve_dns;
        }
    };
}
pub(crate) use emscripten_table;

/// WASI errno values Envoy answers with.
const SUCCESS: u32 = 0;
const BADF: u32 = 8;
const EXIST: u32 = 20;
const FAULT: u32 = 21;
const INVAL: u32 = 28;
const NOENT: u32 = 44;
const NOSYS: u32 = 52;
const NOTSUP: u32 = 58;

fn errno(result: Result<(), Status>) -> u32 {
    match result {
        Ok(()) => SUCCESS,
        Err(Status::BadArgument) => INVAL,
        Err(_) => FAULT,
    }
}

fn read_u32(g: &mut impl Guest, ptr: u64) -> Result<u32, Status> {
    let bytes = g.read(ptr, 4)?;
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes);
    Ok(u32::from_le_bytes(word))
}

/// Gathers an iovec array (`{ptr: u32, len: u32}` pairs).
fn gather(g: &mut impl Guest, iovs: u64, count: u64) -> Result<Vec<u8>, Status> {
    let mut data = Vec::new();
    for i in 0..count {
        let at = iovs + i * 8;
        let ptr = read_u32(g, at)?;
        let len = read_u32(g, at + 4)?;
        data.extend(g.read(u64::from(ptr), u64::from(len))?);
    }
    Ok(data)
}

pub(crate) fn fd_write(
    g: &mut impl Guest,
    fd: u64,
    iovs: u64,
    count: u64,
    ret_written: u64,
) -> u32 {
    if fd != 1 && fd != 2 {
        return BADF;
    }
    errno((|| {
        let data = gather(g, iovs, count)?;
        g.state().write_stdio(fd as u32, &data);
        g.write(ret_written, &(data.len() as u32).to_le_bytes())
    })())
}

/// `fd_fdstat_get`: Envoy writes rights `FD_WRITE` and nothing else for
/// stdout and stderr.
pub(crate) fn fd_fdstat_get(g: &mut impl Guest, fd: u64, ret: u64) -> u32 {
    if fd != 1 && fd != 2 {
        return BADF;
    }
    let mut stat = [0u8; 24];
    stat[8..16].copy_from_slice(&64u64.to_le_bytes());
    errno(g.write(ret, &stat))
}

/// `fd_tell`: stdout and stderr are always at offset 0.
pub(crate) fn fd_tell(g: &mut impl Guest, fd: u64, ret: u64) -> u32 {
    if fd != 1 && fd != 2 {
        return BADF;
    }
    errno(g.write(ret, &0u64.to_le_bytes()))
}

/// `poll_oneoff`: Envoy returns at once with no events (it never sleeps).
pub(crate) fn poll_oneoff(
    g: &mut impl Guest,
    _input: u64,
    _output: u64,
    _count: u64,
    ret: u64,
) -> u32 {
    errno(g.write(ret, &0u32.to_le_bytes()))
}

fn environ(g: &mut impl Guest) -> Vec<Vec<u8>> {
    g.state()
        .settings
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}\0").into_bytes())
        .collect()
}

pub(crate) fn environ_sizes_get(g: &mut impl Guest, ret_count: u64, ret_size: u64) -> u32 {
    let vars = environ(g);
    let size: usize = vars.iter().map(Vec::len).sum();
    errno((|| {
        g.write(ret_count, &(vars.len() as u32).to_le_bytes())?;
        g.write(ret_size, &(size as u32).to_le_bytes())
    })())
}

pub(crate) fn environ_get(g: &mut impl Guest, ret_pointers: u64, ret_buf: u64) -> u32 {
    let vars = environ(g);
    errno((|| {
        let mut at = ret_buf;
        for (i, var) in vars.iter().enumerate() {
            g.write(ret_pointers + i as u64 * 4, &(at as u32).to_le_bytes())?;
            g.write(at, var)?;
            at += var.len() as u64;
        }
        Ok(())
    })())
}

/// `args_sizes_get`: a Proxy-Wasm module has no arguments.
pub(crate) fn args_sizes_get(g: &mut impl Guest, ret_count: u64, ret_size: u64) -> u32 {
    errno((|| {
        g.write(ret_count, &0u32.to_le_bytes())?;
        g.write(ret_size, &0u32.to_le_bytes())
    })())
}

pub(crate) fn args_get(_g: &mut impl Guest, _ret_pointers: u64, _ret_buf: u64) -> u32 {
    SUCCESS
}

/// `clock_time_get`: realtime (0) is the host's wall clock, monotonic (1)
/// its monotonic clock, which starts at [`crate::MONOTONIC_START_NANOS`];
/// both move only when a test advances them.
pub(crate) fn clock_time_get(g: &mut impl Guest, clock: u64, _precision: u64, ret: u64) -> u32 {
    let now = match clock {
        0 => g.state().now_nanos(),
        1 => g.state().monotonic_now_nanos(),
        _ => return NOTSUP,
    };
    errno(g.write(ret, &now.to_le_bytes()))
}

pub(crate) fn clock_res_get(g: &mut impl Guest, clock: u64, ret: u64) -> u32 {
    if clock > 1 {
        return NOTSUP;
    }
    errno(g.write(ret, &1u64.to_le_bytes()))
}

/// `random_get`: from the host's seeded generator, so a test that fixes the
/// seed gets the same bytes every run.
pub(crate) fn random_get(g: &mut impl Guest, buf: u64, len: u64) -> u32 {
    // Envoy refuses more than 64 KiB at once.
    if len > 65_536 {
        return INVAL;
    }
    let len = len as usize;
    let mut bytes = vec![0u8; len];
    g.state().random.fill(&mut bytes);
    errno(g.write(buf, &bytes))
}

/// `fd_pwrite`: as `fd_write`, the offset ignored.
pub(crate) fn fd_pwrite(
    g: &mut impl Guest,
    fd: u64,
    iovs: u64,
    count: u64,
    _offset: u64,
    ret: u64,
) -> u32 {
    fd_write(g, fd, iovs, count, ret)
}

/// `proc_exit`: Envoy logs and returns; the guest traps on its own right after.
pub(crate) fn proc_exit(g: &mut impl Guest, code: u64) {
    g.state().exit_code = Some(code as u32);
}

fn on_stdio(fd: u64) -> u32 {
    if fd == 1 || fd == 2 { SUCCESS } else { BADF }
}

/// Writes a zero result before answering, as Envoy does.
fn zero_then(g: &mut impl Guest, ret: u64, width: usize, errno: u32) -> u32 {
    let _ = g.write(ret, &[0u8; 8][..width]);
    errno
}

pub(crate) fn sched_yield(_g: &mut impl Guest) -> u32 {
    SUCCESS
}

pub(crate) fn fd_read(_g: &mut impl Guest, _fd: u64, _iovs: u64, _count: u64, _ret: u64) -> u32 {
    NOSYS
}

pub(crate) fn fd_pread(
    _g: &mut impl Guest,
    _fd: u64,
    _iovs: u64,
    _count: u64,
    _offset: u64,
    _ret: u64,
) -> u32 {
    NOSYS
}

pub(crate) fn fd_seek(_g: &mut impl Guest, _fd: u64, _offset: u64, _whence: u64, _ret: u64) -> u32 {
    SUCCESS
}

pub(crate) fn fd_close(_g: &mut impl Guest, _fd: u64) -> u32 {
    SUCCESS
}

pub(crate) fn fd_fdstat_set_flags(_g: &mut impl Guest, _fd: u64, _flags: u64) -> u32 {
    NOSYS
}

pub(crate) fn fd_prestat_get(_g: &mut impl Guest, _fd: u64, _ret: u64) -> u32 {
    BADF
}

pub(crate) fn fd_prestat_dir_name(_g: &mut impl Guest, _fd: u64, _path: u64, _len: u64) -> u32 {
    NOSYS
}

pub(crate) fn fd_filestat_get(_g: &mut impl Guest, _fd: u64, _ret: u64) -> u32 {
    BADF
}

pub(crate) fn fd_advise(
    _g: &mut impl Guest,
    _fd: u64,
    _offset: u64,
    _len: u64,
    _advice: u64,
) -> u32 {
    SUCCESS
}

pub(crate) fn fd_allocate(_g: &mut impl Guest, fd: u64, _offset: u64, _len: u64) -> u32 {
    on_stdio(fd)
}

/// `fd_datasync` and `fd_sync`: success for stdout and stderr.
pub(crate) fn fd_sync(_g: &mut impl Guest, fd: u64) -> u32 {
    on_stdio(fd)
}

pub(crate) fn fd_fdstat_set_rights(
    _g: &mut impl Guest,
    fd: u64,
    _base: u64,
    _inheriting: u64,
) -> u32 {
    on_stdio(fd)
}

pub(crate) fn fd_filestat_set_size(_g: &mut impl Guest, fd: u64, _size: u64) -> u32 {
    on_stdio(fd)
}

pub(crate) fn fd_filestat_set_times(
    _g: &mut impl Guest,
    fd: u64,
    _atime: u64,
    _mtime: u64,
    _flags: u64,
) -> u32 {
    on_stdio(fd)
}

pub(crate) fn fd_renumber(_g: &mut impl Guest, fd: u64, to: u64) -> u32 {
    let stdio = |fd| fd == 1 || fd == 2;
    if stdio(fd) && stdio(to) { NOTSUP } else { BADF }
}

/// `fd_readdir`: Envoy's comment says ENOTDIR; the number it returns is EXIST.
pub(crate) fn fd_readdir(
    g: &mut impl Guest,
    _fd: u64,
    _buf: u64,
    _len: u64,
    _cookie: u64,
    ret: u64,
) -> u32 {
    zero_then(g, ret, 4, EXIST)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn path_open(
    _g: &mut impl Guest,
    _fd: u64,
    _dirflags: u64,
    _path: u64,
    _path_len: u64,
    _oflags: u64,
    _base: u64,
    _inheriting: u64,
    _fdflags: u64,
    _ret: u64,
) -> u32 {
    NOENT
}

pub(crate) fn path_filestat_get(
    _g: &mut impl Guest,
    _fd: u64,
    _flags: u64,
    _path: u64,
    _path_len: u64,
    _ret: u64,
) -> u32 {
    NOTSUP
}

/// `path_create_directory`, `path_remove_directory`, `path_unlink_file`:
/// there is no filesystem to change.
pub(crate) fn path_change(_g: &mut impl Guest, _fd: u64, _path: u64, _path_len: u64) -> u32 {
    NOTSUP
}

pub(crate) fn path_rename(
    _g: &mut impl Guest,
    _fd: u64,
    _path: u64,
    _path_len: u64,
    _to_fd: u64,
    _to: u64,
    _to_len: u64,
) -> u32 {
    NOTSUP
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn path_filestat_set_times(
    _g: &mut impl Guest,
    _fd: u64,
    _flags: u64,
    _path: u64,
    _path_len: u64,
    _atime: u64,
    _mtime: u64,
    _fst_flags: u64,
) -> u32 {
    NOTSUP
}

pub(crate) fn path_readlink(
    g: &mut impl Guest,
    _fd: u64,
    _path: u64,
    _path_len: u64,
    _buf: u64,
    _buf_len: u64,
    ret: u64,
) -> u32 {
    zero_then(g, ret, 4, NOTSUP)
}

/// Envoy declares `path_link` and `path_symlink` with fewer parameters
/// than WASI does; a module importing WASI's signatures fails to load
/// there, and here.
pub(crate) fn path_link(
    _g: &mut impl Guest,
    _fd: u64,
    _flags: u64,
    _path: u64,
    _path_len: u64,
    _to_fd: u64,
    _to: u64,
) -> u32 {
    NOTSUP
}

pub(crate) fn path_symlink(
    _g: &mut impl Guest,
    _path: u64,
    _path_len: u64,
    _fd: u64,
    _to: u64,
) -> u32 {
    NOTSUP
}

pub(crate) fn sock_accept(g: &mut impl Guest, _fd: u64, _flags: u64, ret: u64) -> u32 {
    zero_then(g, ret, 8, NOTSUP)
}

pub(crate) fn sock_recv(
    g: &mut impl Guest,
    _fd: u64,
    _iovs: u64,
    _count: u64,
    _flags: u64,
    ret_size: u64,
    ret_flags: u64,
) -> u32 {
    let _ = g.write(ret_size, &0u32.to_le_bytes());
    zero_then(g, ret_flags, 2, NOTSUP)
}

pub(crate) fn sock_send(
    g: &mut impl Guest,
    _fd: u64,
    _iovs: u64,
    _count: u64,
    _flags: u64,
    ret: u64,
) -> u32 {
    zero_then(g, ret, 4, NOTSUP)
}

pub(crate) fn sock_shutdown(_g: &mut impl Guest, _fd: u64, _how: u64) -> u32 {
    NOTSUP
}

pub(crate) fn pthread_equal(_g: &mut impl Guest, a: u64, b: u64) -> u32 {
    u32::from(a == b)
}

pub(crate) fn envoy_resolve_dns(g: &mut impl Guest, _name: u64, _name_len: u64, _ret: u64) -> u32 {
    g.state().violation(
        "envoy_resolve_dns",
        "DNS resolution is not modelled by sdk-host",
    );
    Status::Unimplemented as u32
}
