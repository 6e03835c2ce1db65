package examples_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestComposeFileIsValid checks docker-compose.yml with `docker-compose
// config` (it needs no Docker engine). scripts/test.sh installs it.
func TestComposeFileIsValid(t *testing.T) {
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("docker-compose not installed (scripts/test.sh installs it)")
		}
		t.Skip("docker-compose not installed")
	}
	out, err := exec.Command(bin, "-f", "../docker-compose.yml", "config", "--quiet").CombinedOutput()
	if err != nil {
		t.Fatalf("docker-compose.yml is invalid: %v\n%s", err, out)
	}
	// Services of a profile are only resolved with it.
	for _, profile := range []string{"embedded", "rabbitmq"} {
		out, err := exec.Command(bin, "-f", "../docker-compose.yml", "--profile", profile, "config", "--services").CombinedOutput()
		if err != nil {
			t.Fatalf("docker-compose.yml, profile %s, is invalid: %v\n%s", profile, err, out)
		}
		if profile == "rabbitmq" && !strings.Contains(string(out), "sluice-rabbitmq") {
			t.Errorf("profile rabbitmq has no sluice-rabbitmq service:\n%s", out)
		}
	}
	// The replicas share state in PostgreSQL and keep their home on a
	// named volume.
	out, err = exec.Command(bin, "-f", "../docker-compose.yml", "config").CombinedOutput()
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
	for _, want := range []string{"image: postgres:15", "pg_isready", "SLUICE_STATE: postgres://", "postgres-data:", "sluice-home:"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("docker-compose config lacks %q:\n%s", want, out)
		}
	}
}
