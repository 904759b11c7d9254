// A Proxy-Wasm filter written in Go against the ABI directly, with
// //go:wasmimport and //go:wasmexport (no SDK), built for wasip1 as a
// reactor: it tags each request with its plugin configuration and answers
// 403 to requests that carry x-deny. The Go runtime reads the clocks and
// the random source as it starts, so this module also checks the WASI
// answers a Go module needs.
package main

import (
	"time"
	"unsafe"
)

//go:wasmimport env proxy_log
func proxyLog(level uint32, ptr unsafe.Pointer, size uint32) uint32

//go:wasmimport env proxy_get_buffer_bytes
func proxyGetBufferBytes(kind, start, max uint32, retPtr, retSize unsafe.Pointer) uint32

//go:wasmimport env proxy_get_header_map_value
func proxyGetHeaderMapValue(kind uint32, key unsafe.Pointer, keySize uint32, retPtr, retSize unsafe.Pointer) uint32

//go:wasmimport env proxy_add_header_map_value
func proxyAddHeaderMapValue(kind uint32, key unsafe.Pointer, keySize uint32, value unsafe.Pointer, valueSize uint32) uint32

//go:wasmimport env proxy_send_local_response
func proxySendLocalResponse(status uint32, details unsafe.Pointer, detailsSize uint32, body unsafe.Pointer, bodySize uint32, headers unsafe.Pointer, headersSize uint32, grpcStatus int32) uint32

const (
	logInfo        = 2
	logWarn        = 3
	requestHeaders = 0
	pluginConfig   = 7
	actionContinue = 0
	actionStop     = 1
	statusOk       = 0
	noGrpcStatus   = -1
)

// Buffers the host allocated through proxy_on_memory_allocate: kept
// reachable so the collector leaves them alone.
var allocated = map[uintptr][]byte{}

var config string

// The clock, as the Go runtime sees it when the module starts.
var loaded = time.Now()

func bytesOf(text string) (unsafe.Pointer, uint32) {
	if len(text) == 0 {
		return nil, 0
	}
	data := []byte(text)
	return unsafe.Pointer(&data[0]), uint32(len(data))
}

func log(level uint32, message string) {
	ptr, size := bytesOf(message)
	proxyLog(level, ptr, size)
}

// hostBytes turns what the host returned into a string.
func hostBytes(ptr *byte, size uint32) string {
	if ptr == nil || size == 0 {
		return ""
	}
	text := string(unsafe.Slice(ptr, size))
	delete(allocated, uintptr(unsafe.Pointer(ptr)))
	return text
}

//go:wasmexport proxy_abi_version_0_2_1
func abiVersion() {}

//go:wasmexport proxy_on_memory_allocate
func memoryAllocate(size uint32) unsafe.Pointer {
	if size == 0 {
		size = 1
	}
	buffer := make([]byte, size)
	pointer := unsafe.Pointer(&buffer[0])
	allocated[uintptr(pointer)] = buffer
	return pointer
}

//go:wasmexport proxy_on_context_create
func onContextCreate(context, root uint32) {}

//go:wasmexport proxy_on_vm_start
func onVmStart(root, size uint32) uint32 { return 1 }

//go:wasmexport proxy_on_configure
func onConfigure(root, size uint32) uint32 {
	var ptr *byte
	var got uint32
	if proxyGetBufferBytes(pluginConfig, 0, size, unsafe.Pointer(&ptr), unsafe.Pointer(&got)) != statusOk {
		log(logWarn, "go-filter: no configuration")
		return 0
	}
	config = hostBytes(ptr, got)
	if time.Since(loaded) < 0 {
		log(logWarn, "go-filter: the monotonic clock went backwards")
		return 0
	}
	log(logInfo, "go-filter configured: "+config)
	return 1
}

//go:wasmexport proxy_on_request_headers
func onRequestHeaders(context, headers, endOfStream uint32) uint32 {
	key, keySize := bytesOf("x-deny")
	var ptr *byte
	var size uint32
	if proxyGetHeaderMapValue(requestHeaders, key, keySize, unsafe.Pointer(&ptr), unsafe.Pointer(&size)) == statusOk {
		hostBytes(ptr, size)
		path := "/"
		pathKey, pathSize := bytesOf(":path")
		if proxyGetHeaderMapValue(requestHeaders, pathKey, pathSize, unsafe.Pointer(&ptr), unsafe.Pointer(&size)) == statusOk {
			path = hostBytes(ptr, size)
		}
		log(logWarn, "go-filter: denied "+path)
		body, bodySize := bytesOf("denied by go")
		details, detailsSize := bytesOf("go_filter_denied")
		proxySendLocalResponse(403, details, detailsSize, body, bodySize, nil, 0, noGrpcStatus)
		return actionStop
	}
	name, nameSize := bytesOf("x-go-filter")
	value, valueSize := bytesOf(config)
	proxyAddHeaderMapValue(requestHeaders, name, nameSize, value, valueSize)
	return actionContinue
}

//go:wasmexport proxy_on_done
func onDone(context uint32) uint32 { return 1 }

//go:wasmexport proxy_on_log
func onLog(context uint32) {}

//go:wasmexport proxy_on_delete
func onDelete(context uint32) {}

func main() {}
