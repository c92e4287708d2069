module libbioxen

go 1.26.0

require (
	github.com/kolo/xmlrpc v0.0.0-20220921171641-a4b6fa1dd06b
	github.com/yuin/gopher-lua v1.1.2
	golang.org/x/crypto v0.59.0
)

require golang.org/x/sys v0.50.0

replace github.com/yuin/gopher-lua => ./third_party/gopher-lua
