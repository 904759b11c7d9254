module meshwasm.dev/sdk-host/tests/go

go 1.24
