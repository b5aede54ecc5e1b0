package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
)

// celCostLimit bounds the work one condition may do per request, so that a costly
// expression cannot turn the authorizer into a CPU sink.
const celCostLimit = 10000

func newCELEnv() (*cel.Env, error) {
	claimsType := cel.MapType(cel.StringType, cel.DynType)
	env, err := cel.NewEnv(
		cel.Variable("claims", claimsType),
		cel.Variable("request", cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable("params", cel.MapType(cel.StringType, cel.StringType)),
		// Better Auth joins several roles with ",": claims.role == "admin" is false
		// for "admin,user". roles() splits them, hasRole() asks for one.
		cel.Function("roles", cel.Overload("roles_claims", []*cel.Type{claimsType}, cel.ListType(cel.StringType),
			cel.UnaryBinding(func(c ref.Val) ref.Val {
				return types.NewStringList(types.DefaultTypeAdapter, rolesOf(c))
			}))),
		cel.Function("hasRole", cel.Overload("hasRole_claims_string", []*cel.Type{claimsType, cel.StringType}, cel.BoolType,
			cel.BinaryBinding(func(c, role ref.Val) ref.Val {
				want, _ := role.Value().(string)
				return types.Bool(slices.Contains(rolesOf(c), want))
			}))),
	)
	if err != nil {
		return nil, fmt.Errorf("cel environment: %w", err)
	}
	return env, nil
}

// rolesOf splits the role claim of a CEL claims map (see SplitRoles).
func rolesOf(c ref.Val) []string {
	m, ok := c.(traits.Mapper)
	if !ok {
		return nil
	}
	v, found := m.Find(types.String("role"))
	if !found || v == nil {
		return nil
	}
	return SplitRoles(v.Value())
}

// compileCondition parses and type-checks expr once; it must yield a bool. It also
// returns the claims the expression reads, and whether it may read any claim.
func compileCondition(env *cel.Env, expr string) (prg cel.Program, claims []string, anyClaim bool, err error) {
	checked, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, nil, false, iss.Err()
	}
	if checked.OutputType() != cel.BoolType {
		return nil, nil, false, fmt.Errorf("expression yields %s, not bool", checked.OutputType())
	}
	prg, err = env.Program(checked, cel.CostLimit(celCostLimit))
	if err != nil {
		return nil, nil, false, err
	}
	claims, anyClaim = claimsRead(checked.NativeRep().Expr())
	return prg, claims, anyClaim, nil
}

// claimsRead finds the claims an expression reads: claims.x, claims["x"] and
// "x" in claims name x. Any other use of `claims` (passing it whole, a computed
// key) may read any claim. The verified-token cache keeps only what policies read.
func claimsRead(e celast.Expr) (names []string, anyClaim bool) {
	idents := map[int64]bool{} // ids of every `claims` identifier
	named := map[int64]bool{}  // ids of those used with a constant claim name
	isClaims := func(x celast.Expr) bool { return x.Kind() == celast.IdentKind && x.AsIdent() == "claims" }
	constName := func(x celast.Expr) (string, bool) {
		if x.Kind() != celast.LiteralKind {
			return "", false
		}
		s, ok := x.AsLiteral().Value().(string)
		return s, ok
	}
	celast.PreOrderVisit(e, celast.NewExprVisitor(func(x celast.Expr) {
		switch x.Kind() {
		case celast.IdentKind:
			if isClaims(x) {
				idents[x.ID()] = true
			}
		case celast.SelectKind:
			if sel := x.AsSelect(); isClaims(sel.Operand()) {
				names = append(names, sel.FieldName())
				named[sel.Operand().ID()] = true
			}
		case celast.CallKind:
			c := x.AsCall()
			args := c.Args()
			if fn := c.FunctionName(); (fn == "roles" || fn == "hasRole") && len(args) > 0 && isClaims(args[0]) {
				names = append(names, "role")
				named[args[0].ID()] = true
				return
			}
			if len(args) != 2 {
				return
			}
			switch c.FunctionName() {
			case operators.Index:
				if n, ok := constName(args[1]); ok && isClaims(args[0]) {
					names = append(names, n)
					named[args[0].ID()] = true
				}
			case operators.In:
				if n, ok := constName(args[0]); ok && isClaims(args[1]) {
					names = append(names, n)
					named[args[1].ID()] = true
				}
			}
		}
	}))
	return names, len(named) < len(idents)
}

// celPath is the path CEL sees: canonical, without the trailing slash rules ignore,
// and ASCII-lower-cased unless the rule is case-sensitive, so that
// request.path.startsWith("/admin") judges /ADMIN/ as the rule's templates do.
// Escapes keep their upper-case hex; non-ASCII letters are not folded, as in
// templates.
func celPath(p Path, caseSensitive bool) string {
	s := p.Canonical
	if p.TrailingSlash {
		s = s[:len(s)-1]
	}
	if !caseSensitive {
		s = lowerOutsideEscapes(s)
	}
	return s
}

// lowerOutsideEscapes lower-cases ASCII letters but not the hex of %-escapes, so
// that the canonical spelling ("%3F") still compares equal.
func lowerOutsideEscapes(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return 'A' <= r && r <= 'Z' })
	if i < 0 {
		return s
	}
	b := []byte(s)
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '%':
			i += 2
		case 'A' <= c && c <= 'Z':
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func evalCondition(prg cel.Program, claims map[string]any, req *Request, ps Params, caseSensitive bool) (bool, error) {
	// The strings are cloned for the escape analysis, which does not tell fields
	// apart: were req's strings stored in these maps, every caller's request, and
	// the path segment buffer in it, would have to live on the heap.
	params := make(map[string]string, len(ps))
	for _, p := range ps {
		params[strings.Clone(p.Name)] = strings.Clone(p.Value)
	}
	out, _, err := prg.Eval(map[string]any{
		"claims": claims,
		"request": map[string]string{"method": strings.Clone(req.Method), "path": strings.Clone(celPath(req.Path, caseSensitive)),
			"host": strings.Clone(req.Host)},
		"params": params,
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
