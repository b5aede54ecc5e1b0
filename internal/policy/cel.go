package policy

import (
	"errors"
	"fmt"

	"github.com/google/cel-go/cel"
)

// celCostLimit bounds the work one condition may do per request, so that a costly
// expression cannot turn the authorizer into a CPU sink.
const celCostLimit = 10000

func newCELEnv() (*cel.Env, error) {
	env, err := cel.NewEnv(
		cel.Variable("claims", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("request", cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable("params", cel.MapType(cel.StringType, cel.StringType)),
	)
	if err != nil {
		return nil, fmt.Errorf("cel environment: %w", err)
	}
	return env, nil
}

// compileCondition parses and type-checks expr once; it must yield a bool.
func compileCondition(env *cel.Env, expr string) (cel.Program, error) {
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	if ast.OutputType() != cel.BoolType {
		return nil, fmt.Errorf("expression yields %s, not bool", ast.OutputType())
	}
	prg, err := env.Program(ast, cel.CostLimit(celCostLimit))
	if err != nil {
		return nil, err
	}
	return prg, nil
}

func evalCondition(prg cel.Program, claims map[string]any, req *Request, ps Params) (bool, error) {
	params := make(map[string]string, len(ps))
	for _, p := range ps {
		params[p.Name] = p.Value
	}
	out, _, err := prg.Eval(map[string]any{
		"claims":  claims,
		"request": map[string]string{"method": req.Method, "path": req.Path.Canonical, "host": normalizeHost(req.Host)},
		"params":  params,
	})
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, errors.New("condition did not yield a bool")
	}
	return b, nil
}
