package lease

import (
	"math"
	"strconv"
	"testing"
)

func TestTokenAnnotationRoundTrip(t *testing.T) {
	tests := []struct {
		tok         Token
		transitions int32
		holder      string
		want        string
	}{
		{1, 0, "a", "1/0/a"},
		{150, 3, "pod-b", "150/3/pod-b"},
		{math.MaxUint64, math.MaxInt32, "x", "18446744073709551615/2147483647/x"},
		{7, 2, "ns/pod/with/slashes", "7/2/ns/pod/with/slashes"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			got := TokenAnnotationValue(tc.tok, tc.transitions, tc.holder)
			if got != tc.want {
				t.Errorf("TokenAnnotationValue(%d, %d, %q) = %q, want %q", tc.tok, tc.transitions, tc.holder, got, tc.want)
			}
			back, ok := parseTokenAnnotation(got)
			if want := (tokenAnnotation{tc.tok, tc.transitions, tc.holder}); !ok || back != want {
				t.Errorf("parseTokenAnnotation(%q) = %+v, %v; want %+v", got, back, ok, want)
			}
		})
	}
}

func TestParseTokenAnnotationRejects(t *testing.T) {
	for _, v := range []string{
		"", "150", "/", "150/3", "150/3/", "/3/a", "150//a", "0/3/a", "-5/3/a", "abc/3/a",
		"150/x/a", "150/-1/a", "150/4294967299/a", // 2^32+3 must not wrap to 3
		"18446744073709551616/3/a",
	} {
		t.Run(strconv.Quote(v), func(t *testing.T) {
			if got, ok := parseTokenAnnotation(v); ok {
				t.Errorf("parseTokenAnnotation(%q) = %+v, want it rejected", v, got)
			}
		})
	}
}

func TestTokenOf(t *testing.T) {
	for _, tc := range []struct {
		rv   string
		want Token
	}{
		{"1", 1},
		{"150", 150},
		{"18446744073709551615", math.MaxUint64},
	} {
		t.Run(tc.rv, func(t *testing.T) {
			got, err := TokenOf(tc.rv)
			if err != nil || got != tc.want {
				t.Errorf("TokenOf(%q) = %d, %v; want %d", tc.rv, got, err, tc.want)
			}
		})
	}
	for _, rv := range []string{"", "0", "-1", "abc", "1.5", "18446744073709551616", " 5"} {
		t.Run("reject "+strconv.Quote(rv), func(t *testing.T) {
			got, err := TokenOf(rv)
			if err == nil {
				t.Fatalf("TokenOf(%q) = %d, want an error", rv, got)
			}
			if got != 0 {
				t.Errorf("TokenOf(%q) returned %d alongside its error", rv, got)
			}
		})
	}
}

func TestPreferredHolderAnnotation(t *testing.T) {
	for _, tc := range []struct {
		value       string
		transitions int32
		want        string
	}{
		{PreferredHolderValue("pod-b", 7), 7, "pod-b"},
		{"7/ns/pod-b", 7, "ns/pod-b"}, // an identity may contain "/"
		{"7/pod-b", 8, ""},            // the request belonged to an earlier term
		{"e1/5/5", 5, ""},             // not "<transitions>/<identity>": no reading at all
		{"pod-b/7", 7, ""},            // the old order is not guessed at
		{"7/", 7, ""},
		{"-1/a", -1, ""},
		{"", 0, ""},
	} {
		if got := parsePreferredAnnotation(tc.value, tc.transitions); got != tc.want {
			t.Errorf("parsePreferredAnnotation(%q, %d) = %q, want %q", tc.value, tc.transitions, got, tc.want)
		}
	}
}
