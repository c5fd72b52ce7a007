package config

import (
	"encoding"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// Prefixes of the environment variables that override config keys.
const (
	agentEnvPrefix  = "TUNNEL_AGENT_"
	serverEnvPrefix = "TUNNEL_SERVER_"
)

// EnvVar is an environment variable that overrides a config key.
type EnvVar struct {
	// Name is the variable, e.g. "TUNNEL_AGENT_SERVER_ADDRESS".
	Name string
	// Key is the key it overrides, e.g. "server.address".
	Key string
}

// AgentEnv lists the variables that override agent config keys, in file
// order.
func AgentEnv() []EnvVar { return envVars(reflect.TypeFor[Agent](), agentEnvPrefix) }

// ServerEnv lists the variables that override server config keys, in file
// order.
func ServerEnv() []EnvVar { return envVars(reflect.TypeFor[Server](), serverEnvPrefix) }

func envVars(t reflect.Type, prefix string) []EnvVar {
	fields := envFields(t, prefix)
	vars := make([]EnvVar, len(fields))
	for i, f := range fields {
		vars[i] = f.EnvVar
	}
	return vars
}

// envField is an overridable key and where it lives in the config struct.
type envField struct {
	EnvVar
	index []int // for reflect.Value.FieldByIndex
}

// envFields derives the variables from the toml tags: PREFIX + SECTION +
// "_" + KEY, upper-cased, for every scalar key of every section. Lists such
// as [[targets]] have no variables.
func envFields(t reflect.Type, prefix string) []envField {
	var out []envField
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		section := keyName(sf)
		if section == "" || !isSection(sf.Type) {
			continue
		}
		for j := 0; j < sf.Type.NumField(); j++ {
			kf := sf.Type.Field(j)
			key := keyName(kf)
			if key == "" || isSection(kf.Type) || kf.Type.Kind() == reflect.Slice {
				continue
			}
			out = append(out, envField{
				EnvVar: EnvVar{
					Name: prefix + strings.ToUpper(section+"_"+key),
					Key:  section + "." + key,
				},
				index: []int{i, j},
			})
		}
	}
	return out
}

// applyEnv sets every key whose variable is set to a non-empty value (an
// empty variable counts as unset). It returns which keys came from which
// variable, and an error naming the variable for each bad value.
func applyEnv(cfg any, prefix string, env func(string) string) (map[string]string, []*Error) {
	from := map[string]string{}
	if env == nil {
		return from, nil
	}
	v := reflect.ValueOf(cfg).Elem()
	var errs []*Error
	for _, f := range envFields(v.Type(), prefix) {
		s := env(f.Name)
		if s == "" {
			continue
		}
		if reason := setString(v.FieldByIndex(f.index), s); reason == "" {
			from[f.Key] = f.Name
		} else {
			shown := quote(s)
			if t := v.FieldByIndex(f.index).Type(); isText(t) || t == secretType {
				shown = "" // the reason quotes it, or it must never be shown
			}
			e := invalid(f.Key, shown, reason)
			e.Env = f.Name
			errs = append(errs, e)
		}
	}
	return from, errs
}

// setString sets v from its text form and returns why s is not valid, or "".
func setString(v reflect.Value, s string) string {
	if u, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		if err := u.UnmarshalText([]byte(s)); err != nil {
			return err.Error()
		}
		return ""
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v.OverflowInt(n) {
			return "not an integer"
		}
		v.SetInt(n)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return "not true or false"
		}
		v.SetBool(b)
	default:
		// Unreachable for the config types; TestEnvCoversEveryKey keeps it so.
		return fmt.Sprintf("cannot be set from the environment (%s)", v.Type())
	}
	return ""
}
