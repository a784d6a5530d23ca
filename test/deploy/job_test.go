package deploy_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/leasehold/leasehold/internal/testenv"
)

// TestMigrationJobSerializes runs the migration Job's own command line twice
// at once, with a real token for the Job's rendered Role: the two migrations
// never overlap, and both succeed, one after the other.
func TestMigrationJobSerializes(t *testing.T) {
	cp := testenv.Start(t)
	objs := objects(t, render(t, cp, "migration-job"))
	var role rbacv1.Role
	var job batchv1.Job
	if !find(t, objs, "Role", &role) || !find(t, objs, "Job", &job) {
		t.Fatal("migration-job renders no Role or no Job")
	}
	token, err := cp.ServiceAccountToken(t.Context(), "migrate", "db-migrate", role.Rules)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := tokenKubeconfig(t, cp, token)
	bin := buildLeasehold(t)
	log := filepath.Join(t.TempDir(), "migrations.log")

	// The Job's args, with the pod's values filled in, its TTL shortened, and
	// a migration that logs its start and end.
	c := job.Spec.Template.Spec.Containers[0]
	mk := func(pod string) []string {
		var args []string
		for _, a := range c.Args {
			a = strings.ReplaceAll(a, "$(POD_NAME)", pod)
			a = strings.ReplaceAll(a, "$(POD_NAMESPACE)", "migrate")
			if strings.HasPrefix(a, "--ttl=") {
				a = "--ttl=3s"
			}
			args = append(args, a)
		}
		i := slices.Index(args, "--")
		migrate := `echo "start $LEASEHOLD_IDENTITY" >> ` + log + `; sleep 1; echo "end $LEASEHOLD_IDENTITY" >> ` + log
		return append(append([]string{"--kubeconfig", kubeconfig}, args[:i+1]...), "sh", "-c", migrate)
	}
	a := start(t, nil, bin, mk("db-migrate-a")...)
	b := start(t, nil, bin, mk("db-migrate-b")...)
	if code := a.Wait(t); code != 0 {
		t.Fatalf("first migration exited %d:\n%s", code, a.Stderr)
	}
	if code := b.Wait(t); code != 0 {
		t.Fatalf("second migration exited %d:\n%s", code, b.Stderr)
	}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "start ") || !strings.HasPrefix(lines[1], "end ") ||
		!strings.HasPrefix(lines[2], "start ") || !strings.HasPrefix(lines[3], "end ") ||
		strings.TrimPrefix(lines[0], "start ") != strings.TrimPrefix(lines[1], "end ") {
		t.Fatalf("migrations overlapped or did not both run:\n%s", data)
	}
}

// tokenKubeconfig writes a kubeconfig for cp that authenticates with token.
func tokenKubeconfig(t *testing.T, cp *testenv.ControlPlane, token string) string {
	t.Helper()
	admin, err := clientcmd.LoadFromFile(cp.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientcmdapi.NewConfig()
	for name, cl := range admin.Clusters {
		cfg.Clusters[name] = cl
		cfg.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: token}
		cfg.Contexts["sa"] = &clientcmdapi.Context{Cluster: name, AuthInfo: "sa", Namespace: "migrate"}
	}
	cfg.CurrentContext = "sa"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}
