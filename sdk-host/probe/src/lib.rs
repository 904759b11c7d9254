//! A Proxy-Wasm module scripted by its configuration: each callback runs
//! the hostcalls its script lists and logs every result, so sdk-host's
//! tests can drive any hostcall with any arguments, in wasm and natively.

use serde_json::Value;
use std::cell::RefCell;
use std::ptr::null_mut;

#[cfg_attr(target_family = "wasm", link(wasm_import_module = "env"))]
unsafe extern "C" {
    fn proxy_log(level: u32, ptr: *const u8, len: usize) -> u32;
    fn proxy_get_log_level(ret: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(ret: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        kind: u32,
        start: usize,
        max: usize,
        ret: *mut *mut u8,
        ret_len: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        kind: u32,
        start: usize,
        size: usize,
        ptr: *const u8,
        len: usize,
    ) -> u32;
    fn proxy_get_buffer_status(kind: u32, ret_len: *mut usize, ret_flags: *mut u32) -> u32;
    fn proxy_get_header_map_size(kind: u32, ret: *mut usize) -> u32;
    fn proxy_get_header_map_pairs(kind: u32, ret: *mut *mut u8, ret_len: *mut usize) -> u32;
    fn proxy_set_header_map_pairs(kind: u32, ptr: *const u8, len: usize) -> u32;
    fn proxy_get_header_map_value(
        kind: u32,
        key: *const u8,
        key_len: usize,
        ret: *mut *mut u8,
        ret_len: *mut usize,
    ) -> u32;
    fn proxy_add_header_map_value(
        kind: u32,
        key: *const u8,
        key_len: usize,
        value: *const u8,
        value_len: usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        kind: u32,
        key: *const u8,
        key_len: usize,
        value: *const u8,
        value_len: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(kind: u32, key: *const u8, key_len: usize) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_len: usize,
        ret: *mut *mut u8,
        ret_len: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path: *const u8,
        path_len: usize,
        value: *const u8,
        value_len: usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_len: usize,
        ret: *mut *mut u8,
        ret_len: *mut usize,
        ret_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key: *const u8,
        key_len: usize,
        value: *const u8,
        value_len: usize,
        cas: u32,
    ) -> u32;
    fn proxy_register_shared_queue(name: *const u8, name_len: usize, ret: *mut u32) -> u32;
    fn proxy_resolve_shared_queue(
        vm: *const u8,
        vm_len: usize,
        name: *const u8,
        name_len: usize,
        ret: *mut u32,
    ) -> u32;
    fn proxy_dequeue_shared_queue(token: u32, ret: *mut *mut u8, ret_len: *mut usize) -> u32;
    fn proxy_enqueue_shared_queue(token: u32, ptr: *const u8, len: usize) -> u32;
    fn proxy_continue_stream(kind: u32) -> u32;
    fn proxy_close_stream(kind: u32) -> u32;
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_len: usize,
        body: *const u8,
        body_len: usize,
        headers: *const u8,
        headers_len: usize,
        grpc: i32,
    ) -> u32;
    fn proxy_http_call(
        upstream: *const u8,
        upstream_len: usize,
        headers: *const u8,
        headers_len: usize,
        body: *const u8,
        body_len: usize,
        trailers: *const u8,
        trailers_len: usize,
        timeout: u32,
        ret: *mut u32,
    ) -> u32;
    fn proxy_grpc_call(
        upstream: *const u8,
        upstream_len: usize,
        service: *const u8,
        service_len: usize,
        method: *const u8,
        method_len: usize,
        metadata: *const u8,
        metadata_len: usize,
        message: *const u8,
        message_len: usize,
        timeout: u32,
        ret: *mut u32,
    ) -> u32;
    fn proxy_grpc_stream(
        upstream: *const u8,
        upstream_len: usize,
        service: *const u8,
        service_len: usize,
        method: *const u8,
        method_len: usize,
        metadata: *const u8,
        metadata_len: usize,
        ret: *mut u32,
    ) -> u32;
    fn proxy_grpc_send(token: u32, ptr: *const u8, len: usize, end: u32) -> u32;
    fn proxy_grpc_cancel(token: u32) -> u32;
    fn proxy_grpc_close(token: u32) -> u32;
    fn proxy_get_status(ret_code: *mut u32, ret: *mut *mut u8, ret_len: *mut usize) -> u32;
    fn proxy_set_effective_context(context: u32) -> u32;
    fn proxy_done() -> u32;
    fn proxy_call_foreign_function(
        name: *const u8,
        name_len: usize,
        args: *const u8,
        args_len: usize,
        ret: *mut *mut u8,
        ret_len: *mut usize,
    ) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_len: usize, ret: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
    fn proxy_get_metric(id: u32, ret: *mut u64) -> u32;
}

#[cfg(target_family = "wasm")]
#[link(wasm_import_module = "wasi_snapshot_preview1")]
unsafe extern "C" {
    fn random_get(buf: *mut u8, len: usize) -> u32;
    fn clock_time_get(id: u32, precision: u64, ret: *mut u64) -> u32;
}

thread_local! {
    static SCRIPT: RefCell<Value> = const { RefCell::new(Value::Null) };
    /// The newest stream context, for scripts: `"$stream"`.
    static LAST_STREAM: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

const STATUS: [&str; 13] = [
    "Ok",
    "NotFound",
    "BadArgument",
    "SerializationFailure",
    "ParseFailure",
    "BadExpression",
    "InvalidMemoryAccess",
    "Empty",
    "CasMismatch",
    "ResultMismatch",
    "InternalFailure",
    "BrokenConnection",
    "Unimplemented",
];

fn status_name(code: u32) -> String {
    STATUS
        .get(code as usize)
        .map_or_else(|| format!("Status({code})"), |s| (*s).to_string())
}

fn log(level: u32, message: &str) {
    // SAFETY: a valid slice; the host copies it.
    unsafe {
        proxy_log(level, message.as_ptr(), message.len());
    }
}

/// Takes ownership of a buffer the host allocated with our allocator.
fn owned(ptr: *mut u8, len: usize) -> Vec<u8> {
    if ptr.is_null() || len == 0 {
        return Vec::new();
    }
    // SAFETY: the host got `ptr` from `proxy_on_memory_allocate(len)`,
    // which is a Vec with capacity `len`.
    unsafe { Vec::from_raw_parts(ptr, len, len) }
}

fn text(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

fn names_text(bytes: &[u8]) -> String {
    let names: Vec<String> = pairs(bytes).into_iter().map(|(name, _)| name).collect();
    format!("[{}]", names.join(", "))
}

fn pairs_text(bytes: &[u8]) -> String {
    let shown: Vec<String> = pairs(bytes)
        .into_iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    format!("[{}]", shown.join(", "))
}

/// The ABI's serialized header map, read leniently (a test may send garbage).
fn pairs(bytes: &[u8]) -> Vec<(String, String)> {
    let word = |at: usize| -> usize {
        bytes
            .get(at..at + 4)
            .map_or(0, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as usize)
    };
    if bytes.len() < 4 {
        return Vec::new();
    }
    let count = word(0);
    let mut at = 4 + count * 8;
    let mut out = Vec::new();
    for i in 0..count {
        let (k, v) = (word(4 + i * 8), word(8 + i * 8));
        let key = bytes.get(at..at + k).unwrap_or_default();
        at += k + 1;
        let value = bytes.get(at..at + v).unwrap_or_default();
        at += v + 1;
        out.push((
            String::from_utf8_lossy(key).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    out
}

fn serialize_pairs(value: &Value) -> Vec<u8> {
    let pairs: Vec<(String, String)> = value
        .as_array()
        .map(|a| a.iter().map(|p| (str_at(p, 0), str_at(p, 1))).collect())
        .unwrap_or_default();
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (k, v) in &pairs {
        out.extend((k.len() as u32).to_le_bytes());
        out.extend((v.len() as u32).to_le_bytes());
    }
    for (k, v) in &pairs {
        out.extend(k.as_bytes());
        out.push(0);
        out.extend(v.as_bytes());
        out.push(0);
    }
    out
}

fn str_at(value: &Value, index: usize) -> String {
    match value.get(index) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// One operation's result, as logged.
fn result(code: u32, detail: impl FnOnce() -> String) -> String {
    if code == 0 {
        let detail = detail();
        if detail.is_empty() {
            "ok".to_string()
        } else {
            format!("ok {detail}")
        }
    } else {
        format!("Err({})", status_name(code))
    }
}

struct Op<'a> {
    args: &'a [Value],
    callback_args: &'a [u32],
}

impl Op<'_> {
    fn num(&self, index: usize) -> u64 {
        match self.args.get(index) {
            Some(Value::Number(n)) => n
                .as_u64()
                .or_else(|| n.as_i64().map(|i| i as u64))
                .unwrap_or(0),
            Some(Value::String(s)) if s == "$stream" => {
                u64::from(LAST_STREAM.with(std::cell::Cell::get))
            }
            Some(Value::String(s)) if s.starts_with('$') => s[1..]
                .parse::<usize>()
                .ok()
                .and_then(|i| self.callback_args.get(i))
                .map_or(0, |v| u64::from(*v)),
            _ => 0,
        }
    }

    fn u32(&self, index: usize) -> u32 {
        self.num(index) as u32
    }

    fn string(&self, index: usize) -> String {
        match self.args.get(index) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        }
    }

    fn value(&self, index: usize) -> Value {
        self.args.get(index).cloned().unwrap_or(Value::Null)
    }
}

/// Runs one operation and describes its result.
#[allow(clippy::too_many_lines)]
fn run_op(name: &str, op: &Op<'_>) -> String {
    let mut ptr: *mut u8 = null_mut();
    let mut len: usize = 0;
    let mut word: u32 = 0;
    let mut wide: u64 = 0;
    // SAFETY (whole block): every pointer passed is to a live local or a
    // slice that outlives the call; returned buffers come from our allocator.
    unsafe {
        match name {
            "log" => {
                let message = op.string(1);
                let code = proxy_log(op.u32(0), message.as_ptr(), message.len());
                result(code, String::new)
            }
            "log_bad_pointer" => {
                let code = proxy_log(2, usize::MAX as *const u8, 16);
                result(code, String::new)
            }
            "log_level" => result(proxy_get_log_level(&mut word), || word.to_string()),
            "time" => result(proxy_get_current_time_nanoseconds(&mut wide), || {
                wide.to_string()
            }),
            "tick" => result(proxy_set_tick_period_milliseconds(op.u32(0)), String::new),
            "get_buffer" => {
                let code = proxy_get_buffer_bytes(
                    op.u32(0),
                    op.num(1) as usize,
                    op.num(2) as usize,
                    &mut ptr,
                    &mut len,
                );
                result(code, || text(&owned(ptr, len)))
            }
            "set_buffer" => {
                let data = op.string(3);
                let code = proxy_set_buffer_bytes(
                    op.u32(0),
                    op.num(1) as usize,
                    op.num(2) as usize,
                    data.as_ptr(),
                    data.len(),
                );
                result(code, String::new)
            }
            "buffer_status" => {
                let code = proxy_get_buffer_status(op.u32(0), &mut len, &mut word);
                result(code, || format!("{len} flags {word}"))
            }
            "map_size" => result(proxy_get_header_map_size(op.u32(0), &mut len), || {
                len.to_string()
            }),
            "get_pairs" => {
                let code = proxy_get_header_map_pairs(op.u32(0), &mut ptr, &mut len);
                result(code, || pairs_text(&owned(ptr, len)))
            }
            "header_names" => {
                // Names only, in order: some values (Envoy's x-request-id) are random.
                let code = proxy_get_header_map_pairs(op.u32(0), &mut ptr, &mut len);
                result(code, || names_text(&owned(ptr, len)))
            }
            "set_pairs" => {
                let bytes = serialize_pairs(&op.value(1));
                result(
                    proxy_set_header_map_pairs(op.u32(0), bytes.as_ptr(), bytes.len()),
                    String::new,
                )
            }
            "set_pairs_garbage" => {
                let bytes = [7u8, 0, 0];
                result(
                    proxy_set_header_map_pairs(op.u32(0), bytes.as_ptr(), bytes.len()),
                    String::new,
                )
            }
            "get_header" => {
                let key = op.string(1);
                let code = proxy_get_header_map_value(
                    op.u32(0),
                    key.as_ptr(),
                    key.len(),
                    &mut ptr,
                    &mut len,
                );
                result(code, || text(&owned(ptr, len)))
            }
            "add_header" | "replace_header" => {
                let (key, value) = (op.string(1), op.string(2));
                let f = if name == "add_header" {
                    proxy_add_header_map_value
                } else {
                    proxy_replace_header_map_value
                };
                result(
                    f(
                        op.u32(0),
                        key.as_ptr(),
                        key.len(),
                        value.as_ptr(),
                        value.len(),
                    ),
                    String::new,
                )
            }
            "remove_header" => {
                let key = op.string(1);
                result(
                    proxy_remove_header_map_value(op.u32(0), key.as_ptr(), key.len()),
                    String::new,
                )
            }
            "get_property" | "get_property_int" | "get_property_map" => {
                let path = op.string(0).replace('.', "\0");
                let code = proxy_get_property(path.as_ptr(), path.len(), &mut ptr, &mut len);
                result(code, || {
                    let bytes = owned(ptr, len);
                    match name {
                        "get_property_int" => {
                            let mut word = [0u8; 8];
                            let n = bytes.len().min(8);
                            word[..n].copy_from_slice(&bytes[..n]);
                            i64::from_le_bytes(word).to_string()
                        }
                        "get_property_map" => pairs_text(&bytes),
                        _ => text(&bytes),
                    }
                })
            }
            "set_property" => {
                let (path, value) = (op.string(0).replace('.', "\0"), op.string(1));
                result(
                    proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()),
                    String::new,
                )
            }
            "get_shared" => {
                let key = op.string(0);
                let code =
                    proxy_get_shared_data(key.as_ptr(), key.len(), &mut ptr, &mut len, &mut word);
                result(code, || format!("{} cas {word}", text(&owned(ptr, len))))
            }
            "set_shared" => {
                let (key, value) = (op.string(0), op.string(1));
                result(
                    proxy_set_shared_data(
                        key.as_ptr(),
                        key.len(),
                        value.as_ptr(),
                        value.len(),
                        op.u32(2),
                    ),
                    String::new,
                )
            }
            "register_queue" => {
                let name = op.string(0);
                result(
                    proxy_register_shared_queue(name.as_ptr(), name.len(), &mut word),
                    || word.to_string(),
                )
            }
            "resolve_queue" => {
                let (vm, name) = (op.string(0), op.string(1));
                result(
                    proxy_resolve_shared_queue(
                        vm.as_ptr(),
                        vm.len(),
                        name.as_ptr(),
                        name.len(),
                        &mut word,
                    ),
                    || word.to_string(),
                )
            }
            "enqueue" => {
                let data = op.string(1);
                result(
                    proxy_enqueue_shared_queue(op.u32(0), data.as_ptr(), data.len()),
                    String::new,
                )
            }
            "dequeue" => {
                let code = proxy_dequeue_shared_queue(op.u32(0), &mut ptr, &mut len);
                result(code, || text(&owned(ptr, len)))
            }
            // A callback argument, e.g. `["show", "$1"]` for a body's size.
            "show" => format!("ok {}", op.num(0)),
            "continue" => result(proxy_continue_stream(op.u32(0)), String::new),
            "close" => result(proxy_close_stream(op.u32(0)), String::new),
            "local_response" => {
                let (details, body) = (op.string(1), op.string(2));
                let headers = serialize_pairs(&op.value(3));
                let grpc = op.args.get(4).and_then(Value::as_i64).unwrap_or(-1) as i32;
                let code = proxy_send_local_response(
                    op.u32(0),
                    details.as_ptr(),
                    details.len(),
                    body.as_ptr(),
                    body.len(),
                    headers.as_ptr(),
                    headers.len(),
                    grpc,
                );
                result(code, String::new)
            }
            "http_call" => {
                let upstream = op.string(0);
                let headers = serialize_pairs(&op.value(1));
                let body = op.string(2);
                let trailers = serialize_pairs(&op.value(3));
                let code = proxy_http_call(
                    upstream.as_ptr(),
                    upstream.len(),
                    headers.as_ptr(),
                    headers.len(),
                    body.as_ptr(),
                    body.len(),
                    trailers.as_ptr(),
                    trailers.len(),
                    op.u32(4),
                    &mut word,
                );
                result(code, || word.to_string())
            }
            "grpc_call" | "grpc_stream" => {
                let (upstream, service, method) = (op.string(0), op.string(1), op.string(2));
                let metadata = serialize_pairs(&op.value(3));
                let code = if name == "grpc_call" {
                    let message = op.string(4);
                    proxy_grpc_call(
                        upstream.as_ptr(),
                        upstream.len(),
                        service.as_ptr(),
                        service.len(),
                        method.as_ptr(),
                        method.len(),
                        metadata.as_ptr(),
                        metadata.len(),
                        message.as_ptr(),
                        message.len(),
                        op.u32(5),
                        &mut word,
                    )
                } else {
                    proxy_grpc_stream(
                        upstream.as_ptr(),
                        upstream.len(),
                        service.as_ptr(),
                        service.len(),
                        method.as_ptr(),
                        method.len(),
                        metadata.as_ptr(),
                        metadata.len(),
                        &mut word,
                    )
                };
                result(code, || word.to_string())
            }
            "grpc_send" => {
                let message = op.string(1);
                result(
                    proxy_grpc_send(op.u32(0), message.as_ptr(), message.len(), op.u32(2)),
                    String::new,
                )
            }
            "grpc_cancel" => result(proxy_grpc_cancel(op.u32(0)), String::new),
            "grpc_close" => result(proxy_grpc_close(op.u32(0)), String::new),
            "get_status" => {
                let code = proxy_get_status(&mut word, &mut ptr, &mut len);
                result(code, || format!("{word} {}", text(&owned(ptr, len))))
            }
            "set_effective" => result(proxy_set_effective_context(op.u32(0)), String::new),
            "done" => result(proxy_done(), String::new),
            "foreign" => {
                let (name, args) = (op.string(0), op.string(1));
                let code = proxy_call_foreign_function(
                    name.as_ptr(),
                    name.len(),
                    args.as_ptr(),
                    args.len(),
                    &mut ptr,
                    &mut len,
                );
                result(code, || text(&owned(ptr, len)))
            }
            "define_metric" => {
                let name = op.string(1);
                result(
                    proxy_define_metric(op.u32(0), name.as_ptr(), name.len(), &mut word),
                    || word.to_string(),
                )
            }
            "increment" => {
                let offset = op.args.get(1).and_then(Value::as_i64).unwrap_or(0);
                result(proxy_increment_metric(op.u32(0), offset), String::new)
            }
            "record" => result(proxy_record_metric(op.u32(0), op.num(1)), String::new),
            "get_metric" => result(proxy_get_metric(op.u32(0), &mut wide), || wide.to_string()),
            // WASI, through std where std reaches it.
            "stdout" => {
                println!("{}", op.string(0));
                "ok".to_string()
            }
            "stderr" => {
                eprintln!("{}", op.string(0));
                "ok".to_string()
            }
            "env" => match std::env::var(op.string(0)) {
                Ok(value) => format!("ok {value:?}"),
                Err(_) => "absent".to_string(),
            },
            "args" => format!("ok {}", std::env::args().count()),
            #[cfg(target_family = "wasm")]
            "random" => {
                let mut buf = vec![0u8; op.num(0) as usize];
                let code = random_get(buf.as_mut_ptr(), buf.len());
                format!(
                    "errno {code} {}",
                    buf.iter().map(|b| format!("{b:02x}")).collect::<String>()
                )
            }
            #[cfg(target_family = "wasm")]
            "clock" => {
                let code = clock_time_get(op.u32(0), 1, &mut wide);
                format!("errno {code} {wide}")
            }
            "trap" => {
                #[allow(clippy::panic)]
                {
                    panic!("probe asked to trap")
                }
            }
            other => format!("unknown op {other}"),
        }
    }
}

/// Runs the script of `callback`; returns its scripted return value.
fn run(callback: &str, args: &[u32], default: u32) -> u32 {
    let script = SCRIPT.with(|s| s.borrow().clone());
    if let Some(ops) = script.get(callback).and_then(Value::as_array) {
        for op in ops {
            let Some(list) = op.as_array() else { continue };
            let name = list.first().and_then(Value::as_str).unwrap_or("");
            let op_args = Op {
                args: list.get(1..).unwrap_or_default(),
                callback_args: args,
            };
            let outcome = run_op(name, &op_args);
            let shown: Vec<String> = op_args
                .args
                .iter()
                .map(|a| match a {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            log(
                2,
                &format!("{callback} {name}({}): {outcome}", shown.join(", ")),
            );
        }
    }
    script
        .get("return")
        .and_then(|r| r.get(callback))
        .and_then(Value::as_u64)
        .map_or(default, |v| v as u32)
}

fn load_script(kind: u32, size: usize) -> Result<(), String> {
    let mut ptr: *mut u8 = null_mut();
    let mut len: usize = 0;
    // SAFETY: out-pointers to locals.
    let code = unsafe { proxy_get_buffer_bytes(kind, 0, size, &mut ptr, &mut len) };
    if code != 0 {
        return Err(format!("configuration: {}", status_name(code)));
    }
    let bytes = owned(ptr, len);
    if bytes.is_empty() {
        return Ok(());
    }
    let script: Value = serde_json::from_slice(&bytes).map_err(|e| format!("script: {e}"))?;
    SCRIPT.with(|s| {
        let mut current = s.borrow_mut();
        if let (Value::Object(into), Value::Object(from)) = (&mut *current, &script) {
            into.extend(from.clone());
        } else {
            *current = script;
        }
    });
    Ok(())
}

// --- the ABI's exports --------------------------------------------------------

/// Marks the ABI version, as every Proxy-Wasm module does.
#[unsafe(no_mangle)]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Nothing to set up: the script arrives with the configuration.
#[unsafe(no_mangle)]
pub extern "C" fn _initialize() {}

/// The allocator the host hands buffers from.
#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut buffer = Vec::<u8>::with_capacity(size);
    let ptr = buffer.as_mut_ptr();
    std::mem::forget(buffer);
    ptr
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_context_create(context: u32, parent: u32) {
    if parent != 0 {
        LAST_STREAM.with(|last| last.set(context));
    }
    run("on_context_create", &[context, parent], 0);
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_vm_start(context: u32, size: usize) -> bool {
    if let Err(e) = load_script(6, size) {
        log(4, &e);
        return false;
    }
    run("on_vm_start", &[context, size as u32], 1) != 0
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_configure(context: u32, size: usize) -> bool {
    if let Err(e) = load_script(7, size) {
        log(4, &e);
        return false;
    }
    run("on_configure", &[context, size as u32], 1) != 0
}

macro_rules! export {
    ($name:ident, $script:literal, ($($arg:ident: $ty:ty),*) -> $ret:ty, $default:expr) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn $name($($arg: $ty),*) -> $ret {
            run($script, &[$($arg as u32),*], $default) as $ret
        }
    };
    ($name:ident, $script:literal, ($($arg:ident: $ty:ty),*)) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn $name($($arg: $ty),*) {
            run($script, &[$($arg as u32),*], 0);
        }
    };
}

export!(proxy_on_tick, "on_tick", (context: u32));
export!(proxy_on_queue_ready, "on_queue_ready", (context: u32, token: u32));
export!(proxy_on_log, "on_log", (context: u32));
export!(proxy_on_delete, "on_delete", (context: u32));
export!(proxy_on_downstream_connection_close, "on_downstream_connection_close", (context: u32, peer: u32));
export!(proxy_on_upstream_connection_close, "on_upstream_connection_close", (context: u32, peer: u32));
export!(proxy_on_http_call_response, "on_http_call_response", (context: u32, token: u32, headers: usize, body: usize, trailers: usize));
export!(proxy_on_grpc_receive_initial_metadata, "on_grpc_receive_initial_metadata", (context: u32, token: u32, headers: usize));
export!(proxy_on_grpc_receive, "on_grpc_receive", (context: u32, token: u32, size: usize));
export!(proxy_on_grpc_receive_trailing_metadata, "on_grpc_receive_trailing_metadata", (context: u32, token: u32, trailers: usize));
export!(proxy_on_grpc_close, "on_grpc_close", (context: u32, token: u32, status: u32));
export!(proxy_on_foreign_function, "on_foreign_function", (context: u32, function: u32, size: usize));
export!(proxy_on_new_connection, "on_new_connection", (context: u32) -> u32, 0);
export!(proxy_on_downstream_data, "on_downstream_data", (context: u32, size: usize, end: bool) -> u32, 0);
export!(proxy_on_upstream_data, "on_upstream_data", (context: u32, size: usize, end: bool) -> u32, 0);
export!(proxy_on_request_headers, "on_request_headers", (context: u32, headers: usize, end: bool) -> u32, 0);
export!(proxy_on_request_body, "on_request_body", (context: u32, size: usize, end: bool) -> u32, 0);
export!(proxy_on_request_trailers, "on_request_trailers", (context: u32, trailers: usize) -> u32, 0);
export!(proxy_on_response_headers, "on_response_headers", (context: u32, headers: usize, end: bool) -> u32, 0);
export!(proxy_on_response_body, "on_response_body", (context: u32, size: usize, end: bool) -> u32, 0);
export!(proxy_on_response_trailers, "on_response_trailers", (context: u32, trailers: usize) -> u32, 0);

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_done(context: u32) -> bool {
    run("on_done", &[context], 1) != 0
}
