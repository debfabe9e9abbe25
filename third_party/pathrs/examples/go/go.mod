module pathrs-example

go 1.18

require cyphar.com/go-pathrs v0.0.0

require golang.org/x/sys v0.26.0

replace cyphar.com/go-pathrs => ../../go-pathrs
