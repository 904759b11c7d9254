// A Proxy-Wasm HTTP filter in AssemblyScript (@solo-io/proxy-runtime 0.1.8,
// ABI 0.2.0): it tags every request with its configuration and denies
// requests that carry `x-deny`.
export * from "@solo-io/proxy-runtime/proxy"; // the ABI exports: proxy_on_*, malloc, proxy_abi_version_0_2_0
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues,
  stream_context, send_local_response, log, LogLevelValues, GrpcStatusValues, HeaderPair,
} from "@solo-io/proxy-runtime";
import { get_buffer_bytes, BufferTypeValues } from "@solo-io/proxy-runtime/runtime";

class TaggingRoot extends RootContext {
  tag: string = "";

  // 0.1.8's own onConfigure passes the size where proxy_get_buffer_bytes
  // wants a pointer, so the configuration is read here instead.
  onConfigure(configuration_size: u32): bool {
    if (configuration_size > 0) {
      this.tag = String.UTF8.decode(
        get_buffer_bytes(BufferTypeValues.PluginConfiguration, 0, configuration_size));
    }
    log(LogLevelValues.info, "as-filter configured: " + this.tag);
    return true;
  }

  createContext(context_id: u32): Context {
    return new TaggingFilter(context_id, this);
  }
}

class TaggingFilter extends Context {
  constructor(context_id: u32, root_context: TaggingRoot) {
    super(context_id, root_context);
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const tag = (this.root_context as TaggingRoot).tag;
    stream_context.headers.request.add("x-as-filter", tag);
    if (stream_context.headers.request.get("x-deny") != "") {
      log(LogLevelValues.warn, "as-filter: denied " + stream_context.headers.request.get(":path"));
      send_local_response(403, "as_filter_denied", String.UTF8.encode("denied by as"),
        new Array<HeaderPair>(), GrpcStatusValues.InvalidCode);
      return FilterHeadersStatusValues.StopIteration;
    }
    return FilterHeadersStatusValues.Continue;
  }
}

// Envoy and sdk-host must give this root id (`root_id: as_filter`).
registerRootContext((context_id: u32): RootContext => new TaggingRoot(context_id), "as_filter");
