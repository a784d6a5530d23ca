package election_test

import (
	"os"
	"testing"

	"github.com/leasehold/leasehold/internal/candidate"
)

// candidateEnv makes the test binary run as a candidate process (see
// internal/candidate) instead of running tests.
const candidateEnv = "LEASEHOLD_TEST_CANDIDATE"

func TestMain(m *testing.M) {
	if os.Getenv(candidateEnv) == "1" && len(os.Args) > 1 && os.Args[1] == candidate.Arg {
		os.Exit(candidate.Main(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
