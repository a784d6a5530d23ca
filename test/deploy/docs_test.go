package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDocsNameRealMetrics checks that every leasehold_election_* metric named
// in docs/ (alert rules included) is one that election/metrics.go registers.
func TestDocsNameRealMetrics(t *testing.T) {
	root := repoRoot(t)
	src, err := os.ReadFile(filepath.Join(root, "election", "metrics.go"))
	if err != nil {
		t.Fatal(err)
	}
	var defined []string
	for _, m := range regexp.MustCompile(`Name:\s*"(leasehold_election_\w+)"`).FindAllStringSubmatch(string(src), -1) {
		defined = append(defined, m[1])
	}
	if len(defined) == 0 {
		t.Fatal("found no metric names in election/metrics.go")
	}
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil || len(docs) == 0 {
		t.Fatalf("no docs/*.md (%v)", err)
	}
	named := regexp.MustCompile(`leasehold_election_\w+`)
	for _, doc := range docs {
		text, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range named.FindAllString(string(text), -1) {
			base := n
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				base = strings.TrimSuffix(base, suffix)
			}
			if !slices.Contains(defined, base) && !strings.HasSuffix(n, "_") {
				t.Errorf("%s names %s; election/metrics.go defines %v", filepath.Base(doc), n, defined)
			}
		}
	}
}
