// Package pgtest gives tests a fresh PostgreSQL database of their own on
// the server named by KUMO_TEST_POSTGRES_URL, a superuser URL (.ci/run
// starts one server for the whole suite; .ci/postgres starts one by hand).
// Each call creates a database with a random name and drops it when the
// test ends, so tests, packages and a second copy of the suite running
// beside them never share one.
//
// Without KUMO_TEST_POSTGRES_URL a test skips, unless CI is set: then it
// fails, so CI cannot pass by testing nothing.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the environment variable holding the test server's
// superuser URL.
const EnvURL = "KUMO_TEST_POSTGRES_URL"

// ServerURL returns the test server's superuser URL, skipping the test
// when there is none (failing it when CI is set).
func ServerURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvURL)
	if u == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set: CI must run a PostgreSQL server (see .ci/run)", EnvURL)
		}
		t.Skipf("%s is not set; start a server with .ci/postgres", EnvURL)
	}
	return u
}

// NewDatabase creates an empty database on the test server and returns its
// URL. The database is dropped, with any connections left to it, when the
// test ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	server := ServerURL(t)
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	name := "kumo_test_" + hex.EncodeToString(b[:])

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, server)
	if err != nil {
		t.Fatalf("connect to %s: %v", EnvURL, err)
	}
	defer admin.Close(ctx)
	create := `CREATE DATABASE ` + name
	major, _, _ := strings.Cut(admin.PgConn().ParameterStatus("server_version"), ".")
	if v, err := strconv.Atoi(major); err == nil && v >= 15 {
		// Copying the template's files is quicker than logging them for
		// a database this small.
		create += ` STRATEGY = FILE_COPY`
	}
	if _, err := admin.Exec(ctx, create); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		admin, err := pgx.Connect(ctx, server)
		if err != nil {
			t.Errorf("connect to drop database %s: %v", name, err)
			return
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})

	u, err := url.Parse(server)
	if err != nil {
		t.Fatalf("parse %s: %v", EnvURL, err)
	}
	u.Path = "/" + name
	return u.String()
}
