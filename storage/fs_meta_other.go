//go:build !linux

package storage

import "os"

// setMeta keeps no user metadata outside Linux (see fs_meta_linux.go).
func setMeta(*os.File, map[string]string) error { return nil }

// readMeta has no user metadata to read outside Linux.
func readMeta(string, string) map[string]string { return nil }
