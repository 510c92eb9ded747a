module github.com/tetherdb/tetherdb/bindings/go

go 1.23
