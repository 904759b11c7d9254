//! Hand-written WebAssembly text modules for sdk-host's tests and their
//! cross-checks in Envoy (`tests/e2e/scenarios.rs` includes this file): one
//! calls every WASI function Envoy registers, one logs while starting.

/// (name, parameter types, arguments, errno Envoy answers).
/// Scratch memory: 2048 holds one iovec {3000, 5}; 3000 holds "hello";
/// 2100.. and 2200.. take results.
const CALLS: &[(&str, &str, &str, u32)] = &[
    ("fd_write", "i32 i32 i32 i32", "1 2048 1 2100", 0),
    ("fd_write", "i32 i32 i32 i32", "2 2048 1 2100", 0),
    ("fd_write", "i32 i32 i32 i32", "3 2048 1 2100", 8),
    ("fd_pwrite", "i32 i32 i32 i64 i32", "1 2048 1 0 2100", 0),
    ("fd_read", "i32 i32 i32 i32", "0 2048 1 2100", 52),
    ("fd_pread", "i32 i32 i32 i64 i32", "1 2048 1 0 2100", 52),
    ("fd_seek", "i32 i64 i32 i32", "1 0 0 2100", 0),
    ("fd_close", "i32", "5", 0),
    ("fd_fdstat_get", "i32 i32", "1 2200", 0),
    ("fd_fdstat_get", "i32 i32", "5 2200", 8),
    ("fd_fdstat_set_flags", "i32 i32", "1 0", 52),
    ("fd_prestat_get", "i32 i32", "3 2200", 8),
    ("fd_prestat_dir_name", "i32 i32 i32", "3 2200 10", 52),
    ("environ_sizes_get", "i32 i32", "2100 2104", 0),
    ("environ_get", "i32 i32", "2300 2400", 0),
    ("args_sizes_get", "i32 i32", "2100 2104", 0),
    ("args_get", "i32 i32", "2300 2400", 0),
    ("clock_time_get", "i32 i64 i32", "0 1 2200", 0),
    ("clock_time_get", "i32 i64 i32", "1 1 2200", 0),
    ("clock_time_get", "i32 i64 i32", "2 1 2200", 58),
    ("clock_res_get", "i32 i32", "0 2200", 0),
    ("clock_res_get", "i32 i32", "5 2200", 58),
    ("random_get", "i32 i32", "2200 16", 0),
    ("random_get", "i32 i32", "2200 70000", 28),
    ("sched_yield", "", "", 0),
    ("poll_oneoff", "i32 i32 i32 i32", "2200 2300 1 2100", 0),
    (
        "path_open",
        "i32 i32 i32 i32 i32 i64 i64 i32 i32",
        "3 0 3000 5 0 0 0 0 2100",
        44,
    ),
    ("fd_filestat_get", "i32 i32", "1 2200", 8),
    (
        "path_filestat_get",
        "i32 i32 i32 i32 i32",
        "3 0 3000 5 2200",
        58,
    ),
    ("fd_advise", "i32 i64 i64 i32", "1 0 0 0", 0),
    ("fd_allocate", "i32 i64 i64", "1 0 0", 0),
    ("fd_allocate", "i32 i64 i64", "7 0 0", 8),
    ("fd_datasync", "i32", "1", 0),
    ("fd_sync", "i32", "7", 8),
    ("fd_fdstat_set_rights", "i32 i64 i64", "1 0 0", 0),
    ("fd_filestat_set_size", "i32 i64", "1 0", 0),
    ("fd_filestat_set_times", "i32 i64 i64 i32", "1 0 0 0", 0),
    ("fd_readdir", "i32 i32 i32 i64 i32", "3 2200 10 0 2100", 20),
    ("fd_renumber", "i32 i32", "1 2", 58),
    ("fd_renumber", "i32 i32", "1 5", 8),
    ("fd_tell", "i32 i32", "1 2200", 0),
    ("fd_tell", "i32 i32", "7 2200", 8),
    ("path_create_directory", "i32 i32 i32", "3 3000 5", 58),
    ("path_remove_directory", "i32 i32 i32", "3 3000 5", 58),
    ("path_unlink_file", "i32 i32 i32", "3 3000 5", 58),
    (
        "path_rename",
        "i32 i32 i32 i32 i32 i32",
        "3 3000 5 3 3000 5",
        58,
    ),
    (
        "path_filestat_set_times",
        "i32 i32 i32 i32 i64 i64 i32",
        "3 0 3000 5 0 0 0",
        58,
    ),
    (
        "path_readlink",
        "i32 i32 i32 i32 i32 i32",
        "3 3000 5 2200 10 2100",
        58,
    ),
    (
        "path_link",
        "i32 i32 i32 i32 i32 i32",
        "3 0 3000 5 3 3000",
        58,
    ),
    ("path_symlink", "i32 i32 i32 i32", "3000 5 3 3000", 58),
    ("sock_accept", "i32 i32 i32", "3 0 2100", 58),
    (
        "sock_recv",
        "i32 i32 i32 i32 i32 i32",
        "3 2048 1 0 2100 2104",
        58,
    ),
    ("sock_send", "i32 i32 i32 i32 i32", "3 2048 1 0 2100", 58),
    ("sock_shutdown", "i32 i32", "3 0", 58),
];

/// A Proxy-Wasm module whose `proxy_on_vm_start` calls every WASI function
/// of `namespace` and logs `name=errno` for each, then calls `proc_exit`.
pub(crate) fn wasi_module(namespace: &str) -> String {
    let mut imports = String::new();
    let mut body = String::new();
    let mut data = String::new();
    for (i, (name, params, args, _)) in CALLS.iter().enumerate() {
        let params = if params.is_empty() {
            String::new()
        } else {
            format!("(param {params})")
        };
        imports.push_str(&format!(
            "(import \"{namespace}\" \"{name}\" (func $f{i} {params} (result i32)))\n"
        ));
        let offset = 4096 + i * 32;
        data.push_str(&format!("(data (i32.const {offset}) \"{name}=\")\n"));
        let typed_args: String = params_and_args(CALLS[i].1, args);
        body.push_str(&format!(
            "(call $report (i32.const {offset}) (i32.const {}) (call $f{i} {typed_args}))\n",
            name.len() + 1
        ));
    }
    format!(
        r#"(module
  {imports}
  (import "{namespace}" "proc_exit" (func $exit (param i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 2048) "\b8\0b\00\00\05\00\00\00")
  (data (i32.const 3000) "hello")
  (data (i32.const 3100) "after proc_exit")
  {data}
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 16384))
  ;; Logs "<name>=<errno>" (errno < 100) from the name at $at.
  (func $report (param $at i32) (param $len i32) (param $errno i32)
    (i32.store8 (i32.add (local.get $at) (local.get $len))
      (i32.add (i32.const 48) (i32.div_u (local.get $errno) (i32.const 10))))
    (i32.store8 (i32.add (i32.add (local.get $at) (local.get $len)) (i32.const 1))
      (i32.add (i32.const 48) (i32.rem_u (local.get $errno) (i32.const 10))))
    (drop (call $log (i32.const 2) (local.get $at) (i32.add (local.get $len) (i32.const 2)))))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    {body}
    (call $exit (i32.const 7))
    (drop (call $log (i32.const 2) (i32.const 3100) (i32.const 15)))
    (i32.const 1))
)"#
    )
}

fn params_and_args(params: &str, args: &str) -> String {
    params
        .split_whitespace()
        .zip(args.split_whitespace())
        .map(|(ty, value)| format!("({ty}.const {value})"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The log lines Envoy 1.40 writes for that module, in order.
pub(crate) fn expected_lines() -> Vec<String> {
    let mut lines = Vec::new();
    for (name, _, _, errno) in CALLS {
        // The successful stdout/stderr writes log "hello" before the result.
        if matches!(*name, "fd_write" | "fd_pwrite") && *errno == 0 {
            lines.push("hello".to_string());
        }
        lines.push(format!("{name}={errno:02}"));
    }
    lines.push("after proc_exit".to_string());
    lines
}

/// A module that logs "starting" from what `start` wires up: `(start $say)`
/// (the Wasm start section) or `(export "_initialize" (func $say))`.
pub(crate) fn logging_from(start: &str) -> String {
    format!(
        r#"(module
            (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 100) "starting")
            (func $say (drop (call $log (i32.const 2) (i32.const 100) (i32.const 8))))
            (func (export "proxy_abi_version_0_2_1"))
            (func (export "malloc") (param i32) (result i32) (i32.const 1024))
            {start})"#
    )
}
