//! The WASI calls Envoy answers for Proxy-Wasm modules, under both
//! `wasi_snapshot_preview1` and `wasi_unstable`, answered the way Envoy
//! answers them: stdout and stderr become logs, clocks are the host's
//! (manual) clocks, the environment is the VM's, and there is no
//! filesystem.

use crate::abi::Guest;
use crate::types::Status;

/// WASI errno values Envoy answers with.
pub(crate) const SUCCESS: u32 = 0;
pub(crate) const BADF: u32 = 8;
pub(crate) const EXIST: u32 = 20;
pub(crate) const FAULT: u32 = 21;
pub(crate) const INVAL: u32 = 28;
pub(crate) const NOENT: u32 = 44;
pub(crate) const NOSYS: u32 = 52;
pub(crate) const NOTSUP: u32 = 58;

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
/// its monotonic clock; both move only when a test advances them.
pub(crate) fn clock_time_get(g: &mut impl Guest, clock: u64, _precision: u64, ret: u64) -> u32 {
    let now = match clock {
        0 => g.state().now_nanos(),
        1 => g.state().monotonic_nanos,
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
