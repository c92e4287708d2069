package wire

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	in := []any{"  spaced\nvalue\t", "", "<provision><disk sr=\"\"/></provision>", int64(8589934592), 42, true, false, 1.5,
		ts, []string{"a", "b"}, map[string]string{"0/ip": "127.0.0.1", "a&b<c>": "x"}, []any{}, nil,
		struct {
			A string `xmlrpc:"a"`
			B int    `xmlrpc:"b,omitempty"`
		}{A: "x"}}
	want := []any{"  spaced\nvalue\t", "", "<provision><disk sr=\"\"/></provision>", "8589934592", "42", true, false, 1.5,
		ts, []any{"a", "b"}, map[string]any{"0/ip": "127.0.0.1", "a&b<c>": "x"}, []any{}, "",
		map[string]any{"a": "x"}}
	for _, enc := range []Encoder{{}, {Untyped: true}} {
		body, err := enc.EncodeCall("VM.do", in)
		if err != nil {
			t.Fatal(err)
		}
		method, got, err := DecodeCall(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("%v\n%s", err, body)
		}
		if method != "VM.do" || !reflect.DeepEqual(got, want) {
			t.Fatalf("untyped=%v:\n got %#v\nwant %#v", enc.Untyped, got, want)
		}
		resp, err := enc.EncodeResponse(map[string]any{"Status": "Success", "Value": in})
		if err != nil {
			t.Fatal(err)
		}
		v, err := DecodeResponse(bytes.NewReader(resp))
		if err != nil || !reflect.DeepEqual(v, map[string]any{"Status": "Success", "Value": want}) {
			t.Fatalf("response: %v %#v", err, v)
		}
	}
}

func TestDecodeForms(t *testing.T) {
	v, err := DecodeResponse(strings.NewReader(`<?xml version="1.0" encoding="UTF-8"?>
<methodResponse><params><param><value><struct>
 <member><name>i</name><value><i4>-7</i4></value></member>
 <member><name>n</name><value><nil/></value></member>
 <member><name>b</name><value><base64>aGk=</base64></value></member>
 <member><name>e</name><value/></member>
</struct></value></param></params></methodResponse>`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"i": int64(-7), "n": nil, "b": "hi", "e": ""}
	if !reflect.DeepEqual(v, want) {
		t.Fatalf("%#v", v)
	}
	_, err = DecodeResponse(strings.NewReader(`<methodResponse><fault><value><struct><member><name>faultCode</name><value><int>3</int></value></member><member><name>faultString</name><value>no</value></member></struct></value></fault></methodResponse>`))
	var f *Fault
	if !errors.As(err, &f) || f.Code != 3 || f.String != "no" {
		t.Fatalf("fault: %v", err)
	}
	for _, bad := range []string{"", "<methodResponse>", "<html>500</html>", "<methodResponse><params><param><value><int>x</int></value></param></params></methodResponse>",
		"<methodResponse><params><param><value>a<string>b</string></value></param></params></methodResponse>"} {
		if _, err := DecodeResponse(strings.NewReader(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if _, _, err := DecodeCall(strings.NewReader("<methodCall><methodName></methodName></methodCall>")); err == nil {
		t.Error("empty method name accepted")
	}
}
