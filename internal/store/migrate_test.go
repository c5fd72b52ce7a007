package store

import (
	"testing"
	"testing/fstest"
)

func TestLoadMigrations(t *testing.T) {
	file := func(sql string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(sql)} }
	tests := []struct {
		name    string
		files   fstest.MapFS
		want    []int // versions; nil means an error is expected
		wantSQL string
	}{
		{
			name:    "Ordered",
			files:   fstest.MapFS{"m/0002_more.sql": file("B"), "m/0001_init.sql": file("A"), "m/README.md": file("x")},
			want:    []int{1, 2},
			wantSQL: "A",
		},
		{name: "Gap", files: fstest.MapFS{"m/0001_a.sql": file(""), "m/0003_c.sql": file("")}},
		{name: "Duplicate", files: fstest.MapFS{"m/0001_a.sql": file(""), "m/0001_b.sql": file("")}},
		{name: "StartsAtTwo", files: fstest.MapFS{"m/0002_a.sql": file("")}},
		{name: "Zero", files: fstest.MapFS{"m/0000_a.sql": file("")}},
		{name: "NoNumber", files: fstest.MapFS{"m/init.sql": file("")}},
		{name: "NoUnderscore", files: fstest.MapFS{"m/0001.sql": file("")}},
		{name: "None", files: fstest.MapFS{"m/README.md": file("")}},
		{name: "NoDirectory", files: fstest.MapFS{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			migs, err := loadMigrations(tt.files, "m")
			if tt.want == nil {
				if err == nil {
					t.Fatalf("loadMigrations = %+v, want an error", migs)
				}
				return
			}
			if err != nil {
				t.Fatalf("loadMigrations: %v", err)
			}
			var got []int
			for _, m := range migs {
				got = append(got, m.version)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("versions = %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("versions = %v, want %v", got, tt.want)
				}
			}
			if migs[0].sql != tt.wantSQL {
				t.Errorf("first migration = %q, want %q", migs[0].sql, tt.wantSQL)
			}
		})
	}
}

func TestEmbeddedSQLiteMigrations(t *testing.T) {
	migs, err := loadMigrations(schemaFS, "schema/sqlite")
	if err != nil {
		t.Fatalf("embedded SQLite migrations: %v", err)
	}
	if len(migs) == 0 {
		t.Fatal("no embedded SQLite migrations")
	}
}
