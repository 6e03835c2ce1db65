//go:build reactor

package main

import sluicefn "github.com/sluicehq/sluice/functions/go"

func init() { sluicefn.Register(handle) }

func main() {}
