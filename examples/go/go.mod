module github.com/tetherdb/tetherdb/examples/go

go 1.23

require github.com/tetherdb/tetherdb/bindings/go v0.0.0

// The binding in this repository, not a published version.
replace github.com/tetherdb/tetherdb/bindings/go => ../../bindings/go
