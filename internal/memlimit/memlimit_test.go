package memlimit

import "testing"

func TestLimit(t *testing.T) {
	for name, tc := range map[string]struct {
		env     map[string]string
		want    int64
		ok, bad bool
	}{
		"no limit":                {env: map[string]string{}},
		"256Mi container":         {env: map[string]string{EnvVar: "268435456"}, want: 241591910, ok: true},
		"GOMEMLIMIT wins":         {env: map[string]string{EnvVar: "268435456", "GOMEMLIMIT": "100MiB"}},
		"not a number":            {env: map[string]string{EnvVar: "256Mi"}, bad: true},
		"zero (no limit in spec)": {env: map[string]string{EnvVar: "0"}, bad: true},
	} {
		t.Run(name, func(t *testing.T) {
			got, ok, err := Limit(func(k string) string { return tc.env[k] })
			if got != tc.want || ok != tc.ok || (err != nil) != tc.bad {
				t.Fatalf("Limit = %d, %v, %v; want %d, %v, error %v", got, ok, err, tc.want, tc.ok, tc.bad)
			}
		})
	}
}
