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
		want        string
	}{
		{1, 0, "1/0"},
		{150, 3, "150/3"},
		{math.MaxUint64, math.MaxInt32, "18446744073709551615/2147483647"},
		{7, -1, "7/-1"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			got := formatTokenAnnotation(tc.tok, tc.transitions)
			if got != tc.want {
				t.Errorf("formatTokenAnnotation(%d, %d) = %q, want %q", tc.tok, tc.transitions, got, tc.want)
			}
			if back := parseTokenAnnotation(got, tc.transitions); back != tc.tok {
				t.Errorf("parseTokenAnnotation(%q, %d) = %d, want %d", got, tc.transitions, back, tc.tok)
			}
		})
	}
}

func TestParseTokenAnnotation(t *testing.T) {
	tests := []struct {
		name        string
		value       string
		transitions int32
		want        Token
	}{
		{"match", "150/3", 3, 150},
		{"transitions differ", "150/3", 4, 0},
		{"transitions behind", "150/3", 2, 0},
		{"transitions zero", "150/0", 0, 150},
		{"empty", "", 0, 0},
		{"no separator", "150", 0, 0},
		{"only separator", "/", 0, 0},
		{"missing token", "/3", 3, 0},
		{"missing transitions", "150/", 0, 0},
		{"zero token", "0/3", 3, 0},
		{"negative token", "-5/3", 3, 0},
		{"non-numeric token", "abc/3", 3, 0},
		{"non-numeric transitions", "150/x", 0, 0},
		{"extra field", "150/3/4", 3, 0},
		{"transitions overflow int32", "150/4294967299", 3, 0}, // 2^32+3 must not wrap to 3
		{"token overflow", "18446744073709551616/3", 3, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseTokenAnnotation(tc.value, tc.transitions); got != tc.want {
				t.Errorf("parseTokenAnnotation(%q, %d) = %d, want %d", tc.value, tc.transitions, got, tc.want)
			}
		})
	}
}

func TestTokenFromResourceVersion(t *testing.T) {
	for _, tc := range []struct {
		rv   string
		want Token
	}{
		{"1", 1},
		{"150", 150},
		{"18446744073709551615", math.MaxUint64},
	} {
		t.Run(tc.rv, func(t *testing.T) {
			got, err := tokenFromResourceVersion(tc.rv)
			if err != nil || got != tc.want {
				t.Errorf("tokenFromResourceVersion(%q) = %d, %v; want %d", tc.rv, got, err, tc.want)
			}
		})
	}
	for _, rv := range []string{"", "0", "-1", "abc", "1.5", "18446744073709551616", " 5"} {
		t.Run("reject "+strconv.Quote(rv), func(t *testing.T) {
			got, err := tokenFromResourceVersion(rv)
			if err == nil {
				t.Fatalf("tokenFromResourceVersion(%q) = %d, want an error", rv, got)
			}
			if got != 0 {
				t.Errorf("tokenFromResourceVersion(%q) returned %d alongside its error", rv, got)
			}
		})
	}
}
