%% @doc Code that Arsenal compiles, checks, loads and evaluates inside a node.
%%
%% Everything a user hands Arsenal as source goes through here, in the node
%% that will run it (a sandbox, or an attached node for an admin):
%%
%%   * scan/3 checks source against a security policy *before* it is compiled,
%%     because compiling Elixir runs code (module bodies, macros). It walks the
%%     syntax tree of either language and reports each refused call with its
%%     line. It is a guard-rail, not a jail: the isolation of a sandbox is its
%%     separate OS process and its limits.
%%   * compile/1 compiles a set of files (Erlang with epp and compile:forms,
%%     Elixir with Kernel.ParallelCompiler) and returns errors as data.
%%   * swap/1 replaces one module while its processes run, the way OTP's
%%     release handler does: soft purge, suspend the processes whose callback
%%     module it is, load, sys:change_code, resume; and puts the previous
%%     version back if a code_change fails.
%%   * eval/1 and the REPL sessions evaluate expressions in a process of their
%%     own, killed at the timeout, with output captured.
%%
%% Every wait has a timeout; output and results are capped.
-module(arsenal_agent_code).

-export([scan/3, compile/1, swap/1, load_version/1, eval/1,
         repl_start/2, repl_eval/3, repl_stop/1, repl_complete/2, input_complete/2, module_facts/1]).

-define(MAX_OUTPUT, 65536).
-define(MAX_VALUE_WORDS, 200000).
-define(MAX_SCANNED_PROCESSES, 100000).
-define(SYS_TIMEOUT, 5000).
-define(REPL_IDLE_MS, 1800000).

%%====================================================================
%% Security policy scan
%%====================================================================

%% A policy (from Arsenal): #{rules => [{Module, Function, Arity, Action, Reason}],
%% allow => [{Module, Function, Arity}], dynamic => refuse | warn | allow}. Names
%% are binaries, Function may be <<"*">> and Arity -1 for "any". Action is
%% refuse, or relative_path: allowed only when the first argument is a literal
%% relative path without "..".

%% @doc Check source against a policy. Returns the findings, each with a line.
%% Cost: one parse of the source; nothing is compiled or run.
-spec scan(erlang | elixir, binary(), map()) -> {ok, [map()]} | {error, map()}.
scan(erlang, Source, Policy) ->
    case parse_erlang_exprs_or_forms(Source) of
        {ok, Forms} -> {ok, scan_erlang(Forms, Policy)};
        {error, Error} -> {error, Error}
    end;
scan(elixir, Source, Policy) ->
    case quoted(Source, <<"nofile">>) of
        {ok, Ast} -> {ok, scan_elixir(Ast, Policy)};
        {error, Error} -> {error, Error}
    end.

parse_erlang_exprs_or_forms(Source) ->
    case erl_scan:string(terminated(Source), 1) of
        {ok, Tokens, _} -> parse_forms(split_forms(Tokens), []);
        {error, {Line, Mod, Desc}, _} -> {error, error_map(Line, Mod, Desc)}
    end.

%% Expressions typed without the final full stop get one (as the shell does).
terminated(Source) ->
    Text = unicode:characters_to_list(string:trim(Source, trailing)),
    case lists:reverse(Text) of
        [$. | _] -> Text;
        _ -> Text ++ "."
    end.

split_forms(Tokens) ->
    split_forms(Tokens, [], []).
split_forms([], [], Acc) -> lists:reverse(Acc);
split_forms([], Cur, Acc) -> lists:reverse([lists:reverse(Cur) | Acc]);
split_forms([{dot, _} = D | Rest], Cur, Acc) -> split_forms(Rest, [], [lists:reverse([D | Cur]) | Acc]);
split_forms([T | Rest], Cur, Acc) -> split_forms(Rest, [T | Cur], Acc).

parse_forms([], Acc) ->
    {ok, lists:reverse(Acc)};
parse_forms([Tokens | Rest], Acc) ->
    case erl_parse:parse_form(Tokens) of
        {ok, Form} -> parse_forms(Rest, [Form | Acc]);
        {error, _} ->
            case erl_parse:parse_exprs(Tokens) of
                {ok, Exprs} -> parse_forms(Rest, lists:reverse(Exprs, Acc));
                {error, {Line, Mod, Desc}} -> {error, error_map(Line, Mod, Desc)}
            end
    end.

quoted(Source, File) ->
    case elixir_available() of
        false -> {error, no_elixir()};
        true ->
            case 'Elixir.Code':string_to_quoted(Source, [{file, File}, {columns, true}]) of
                {ok, Ast} -> {ok, Ast};
                {error, {Meta, Message, Token}} ->
                    {error, #{line => ex_line(Meta),
                              message => iolist_to_binary([message_text(Message), message_text(Token)])}}
            end
    end.

message_text(B) when is_binary(B) -> B;
message_text({Prefix, Suffix}) -> [message_text(Prefix), message_text(Suffix)];
message_text(L) when is_list(L) -> unicode:characters_to_binary(L);
message_text(Other) -> io_lib:format("~0tp", [Other]).

%% --- Erlang syntax trees

scan_erlang(Forms, Policy) ->
    Ctx = {[{F, A} || {function, _, F, A, _} <- Forms], Policy},
    lists:reverse(walk(Forms, fun(Node, Acc) -> erl_node(Node, Ctx, Acc) end, [])).

%% Visit every tuple of a syntax tree (Erlang forms or quoted Elixir), depth first.
walk(T, Visit, Acc) when is_tuple(T) ->
    walk(tuple_to_list(T), Visit, Visit(T, Acc));
walk([H | T], Visit, Acc) ->
    walk(T, Visit, walk(H, Visit, Acc));
walk(_, _, Acc) ->
    Acc.

erl_node({call, Anno, {remote, _, {atom, _, M}, {atom, _, F}}, Args}, {_, Policy}, Acc) ->
    check_call(M, F, Args, erl_literal_args(Args), line(Anno), Policy, Acc);
erl_node({call, Anno, {remote, _, _, _}, _}, {_, Policy}, Acc) ->
    dynamic(line(Anno), <<"a call whose module or function is computed at run time">>, Policy, Acc);
erl_node({call, Anno, {atom, _, F}, Args}, {Locals, Policy}, Acc) ->
    Arity = length(Args),
    case not lists:member({F, Arity}, Locals) andalso erl_internal:bif(F, Arity) of
        true -> check_call(erlang, F, Args, erl_literal_args(Args), line(Anno), Policy, Acc);
        false -> Acc
    end;
erl_node({'fun', Anno, {function, {atom, _, M}, {atom, _, F}, {integer, _, A}}}, {_, Policy}, Acc) ->
    check_mfa(M, F, A, [], line(Anno), Policy, Acc);
erl_node({'fun', Anno, {function, _, _, _}}, {_, Policy}, Acc) ->
    dynamic(line(Anno), <<"a fun whose module or function is computed at run time">>, Policy, Acc);
erl_node(_, _, Acc) ->
    Acc.

%% Literal arguments as plain terms (atoms, strings), 'not_literal' otherwise.
erl_literal_args(Args) ->
    [erl_literal(A) || A <- Args].

erl_literal({atom, _, A}) -> A;
erl_literal({string, _, S}) -> unicode:characters_to_binary(S);
erl_literal({bin, _, [{bin_element, _, {string, _, S}, default, default}]}) -> unicode:characters_to_binary(S);
erl_literal({nil, _}) -> [];
erl_literal(_) -> not_literal.

line(Anno) -> erl_anno:line(Anno).

%% --- Elixir syntax trees

scan_elixir(Ast, Policy) ->
    Ctx = {walk(Ast, fun collect_alias/2, #{}), Policy},
    lists:reverse(walk(Ast, fun(Node, Acc) -> ex_node(Node, Ctx, Acc) end, [])).

%% Aliases are collected from the whole file first (conservative: lexical scope is ignored).
collect_alias({alias, _, [Target | Rest]}, Map) -> add_alias(Target, Rest, Map);
collect_alias(_, Map) -> Map.

add_alias({{'.', _, [{'__aliases__', _, Base}, '{}']}, _, Items}, _, Map) ->
    lists:foldl(fun({'__aliases__', _, Sub}, M) when is_list(Sub) -> put_alias(Base ++ Sub, lists:last(Sub), M);
                   (_, M) -> M
                end, Map, Items);
add_alias(Target, Rest, Map) ->
    Full = case Target of
               {'__aliases__', _, Parts} when is_list(Parts) -> Parts;
               A when is_atom(A) -> {erlang_module, A};
               _ -> none
           end,
    As = case Rest of
             [Opts] when is_list(Opts) ->
                 case lists:keyfind(as, 1, Opts) of
                     {as, {'__aliases__', _, [Name]}} -> Name;
                     _ -> default
                 end;
             _ -> default
         end,
    case {Full, As} of
        {none, _} -> Map;
        {{erlang_module, _}, default} -> Map;
        {{erlang_module, Mod}, _} -> Map#{As => {erlang_module, Mod}};
        {Parts2, default} -> put_alias(Parts2, lists:last(Parts2), Map);
        {Parts2, _} -> put_alias(Parts2, As, Map)
    end.

put_alias(Parts, As, Map) when is_atom(As) ->
    case lists:all(fun is_atom/1, Parts) of
        true -> Map#{As => Parts};
        false -> Map
    end;
put_alias(_, _, Map) ->
    Map.

ex_node({{'.', _, [ModAst, F]}, Meta, Args}, {Aliases, Policy}, Acc) when is_atom(F), is_list(Args) ->
    Line = ex_line(Meta),
    case ex_module(ModAst, Aliases) of
        own -> Acc;
        {module, M} -> check_call(M, F, Args, ex_literal_args(Args, Aliases), Line, Policy, Acc);
        unknown ->
            case Args =:= [] andalso proplists:get_value(no_parens, Meta) =:= true of
                true -> Acc;  % map.field, struct.field
                false -> dynamic(Line, <<"a call on a module computed at run time">>, Policy, Acc)
            end
    end;
ex_node({import, Meta, [ModAst | _]}, {Aliases, Policy}, Acc) ->
    case ex_module(ModAst, Aliases) of
        {module, M} ->
            case module_has_rules(M, Policy) of
                true ->
                    [finding(ex_line(Meta), refused, <<"import ", (mod_text(M))/binary>>,
                             <<"importing a module with restricted functions hides the calls from the "
                               "scan; call them with the module name">>) | Acc];
                false -> Acc
            end;
        _ -> Acc
    end;
ex_node({F, Meta, Args}, {Aliases, Policy}, Acc) when is_atom(F), is_list(Args), is_list(Meta) ->
    case is_kernel_spawn_or_apply(F, length(Args)) of
        true -> check_call(erlang, F, Args, ex_literal_args(Args, Aliases), ex_line(Meta), Policy, Acc);
        false -> Acc
    end;
ex_node(_, _, Acc) ->
    Acc.

is_kernel_spawn_or_apply(apply, A) -> A =:= 2 orelse A =:= 3;
is_kernel_spawn_or_apply(spawn, 3) -> true;
is_kernel_spawn_or_apply(spawn_link, 3) -> true;
is_kernel_spawn_or_apply(spawn_monitor, 3) -> true;
is_kernel_spawn_or_apply(_, _) -> false.

ex_module(M, _) when is_atom(M) -> {module, M};
ex_module({'__MODULE__', _, _}, _) -> own;
ex_module({'__aliases__', _, [{'__MODULE__', _, _} | _]}, _) -> own;
ex_module({'__aliases__', _, [First | Rest] = Parts}, Aliases) when is_atom(First) ->
    case lists:all(fun is_atom/1, Parts) of
        false -> unknown;
        true ->
            case maps:get(First, Aliases, none) of
                none -> {module, elixir_module(Parts)};
                {erlang_module, Mod} when Rest =:= [] -> {module, Mod};
                {erlang_module, _} -> unknown;
                Full -> {module, elixir_module(Full ++ Rest)}
            end
    end;
ex_module(_, _) ->
    unknown.

elixir_module(Parts) ->
    binary_to_atom(iolist_to_binary(["Elixir" | [[".", atom_to_binary(P)] || P <- Parts]])).

ex_literal_args(Args, Aliases) ->
    [ex_literal(A, Aliases) || A <- Args].

ex_literal(B, _) when is_binary(B) -> B;
ex_literal(A, _) when is_atom(A) -> A;
ex_literal({'__aliases__', _, _} = Ast, Aliases) ->
    case ex_module(Ast, Aliases) of
        {module, M} -> M;
        _ -> not_literal
    end;
ex_literal(L, _) when is_list(L) ->
    case io_lib:printable_unicode_list(L) of
        true -> unicode:characters_to_binary(L);
        false -> not_literal
    end;
ex_literal(_, _) -> not_literal.

ex_line(Meta) when is_list(Meta) ->
    case lists:keyfind(line, 1, Meta) of
        {line, L} -> L;
        false -> 0
    end;
ex_line(_) -> 0.

%% --- The policy itself

%% A call to M:F with the given arguments; apply/spawn with literal targets are
%% checked as calls to their target, with computed targets as dynamic calls.
check_call(erlang, F, Args, Literals, Line, Policy, Acc)
  when F =:= apply; F =:= spawn; F =:= spawn_link; F =:= spawn_monitor; F =:= spawn_opt ->
    Acc1 = check_mfa(erlang, F, length(Args), Literals, Line, Policy, Acc),
    case {F, Literals} of
        {apply, [_, _]} -> dynamic(Line, <<"apply/2 of a fun">>, Policy, Acc1);
        {_, [M, Fn, _ | _]} when is_atom(M), is_atom(Fn), M =/= not_literal, Fn =/= not_literal ->
            TargetArity = target_arity(lists:nth(3, Args)),
            check_mfa(M, Fn, TargetArity, [], Line, Policy, Acc1);
        {_, [_, _, _ | _]} ->
            dynamic(Line, <<(atom_to_binary(F))/binary, " of a module or function computed at run time">>,
                    Policy, Acc1);
        _ -> Acc1
    end;
check_call('Elixir.Kernel', F, Args, Literals, Line, Policy, Acc) when F =:= apply ->
    check_call(erlang, F, Args, Literals, Line, Policy, Acc);
check_call(M, F, Args, Literals, Line, Policy, Acc) ->
    check_mfa(M, F, length(Args), Literals, Line, Policy, Acc).

target_arity({cons, _, _, _} = L) -> erl_list_length(L);
target_arity({nil, _}) -> 0;
target_arity(L) when is_list(L) -> length(L);
target_arity(_) -> -1.

erl_list_length({cons, _, _, T}) -> 1 + erl_list_length(T);
erl_list_length(_) -> 0.

check_mfa(M, F, A, Literals, Line, Policy, Acc) ->
    MB = atom_to_binary(M),
    FB = atom_to_binary(F),
    case is_allowed(MB, FB, A, Policy) of
        true -> Acc;
        false ->
            case find_rule(MB, FB, A, maps:get(rules, Policy, [])) of
                none -> Acc;
                {refuse, Reason} ->
                    [finding(Line, refused, call_text(M, F, A), Reason) | Acc];
                {relative_path, Reason} ->
                    case Literals of
                        [Path | _] when is_binary(Path) ->
                            case safe_relative(Path) of
                                true -> Acc;
                                false -> [finding(Line, refused, call_text(M, F, A), Reason) | Acc]
                            end;
                        _ -> [finding(Line, refused, call_text(M, F, A), Reason) | Acc]
                    end
            end
    end.

is_allowed(M, F, A, Policy) ->
    lists:any(fun({AM, AF, AA}) -> AM =:= M andalso AF =:= F andalso (AA =:= -1 orelse AA =:= A) end,
              maps:get(allow, Policy, [])).

find_rule(_, _, _, []) -> none;
find_rule(M, F, A, [{M, RF, RA, Action, Reason} | Rest]) ->
    case (RF =:= <<"*">> orelse RF =:= F) andalso (RA =:= -1 orelse RA =:= A) of
        true -> {Action, Reason};
        false -> find_rule(M, F, A, Rest)
    end;
find_rule(M, F, A, [_ | Rest]) -> find_rule(M, F, A, Rest).

module_has_rules(M, Policy) ->
    MB = atom_to_binary(M),
    lists:any(fun(Rule) -> element(1, Rule) =:= MB end, maps:get(rules, Policy, [])).

safe_relative(Path) ->
    Parts = filename:split(Path),
    Path =/= <<>> andalso filename:pathtype(Path) =:= relative
        andalso not lists:member(<<"..">>, Parts)
        andalso binary:first(Path) =/= $~.

dynamic(Line, What, Policy, Acc) ->
    case maps:get(dynamic, Policy, refuse) of
        allow -> Acc;
        warn -> [finding(Line, warning, <<"dynamic call">>, What) | Acc];
        refuse ->
            [finding(Line, refused, <<"dynamic call">>,
                     <<What/binary, ": the scan cannot tell what it calls (name the module and function)">>)
             | Acc]
    end.

finding(Line, Severity, Call, Reason) ->
    #{line => Line, severity => Severity, call => Call, reason => Reason}.

call_text(M, F, A) ->
    Sep = case atom_to_binary(M) of <<"Elixir.", _/binary>> -> "."; _ -> ":" end,
    iolist_to_binary([mod_text(M), Sep, atom_to_binary(F), "/", integer_to_binary(A)]).

mod_text(M) ->
    case atom_to_binary(M) of
        <<"Elixir.", Rest/binary>> -> Rest;
        B -> B
    end.

refused(Findings) ->
    [F || #{severity := refused} = F <- Findings].

%%====================================================================
%% Compiling
%%====================================================================

%% @doc Compile files (#{lang, dir, files => [{RelPath, Source}], policy}) and
%% load them. Files are written under Dir/src (the sandbox's own directory) so
%% errors name them; beams go to Dir/ebin. The policy is checked first, on
%% every file, before anything is compiled.
-spec compile(map()) -> {ok, map()} | {error, map()}.
compile(#{lang := Lang, dir := Dir, files := Files, policy := Policy}) ->
    Written = lists:zip(Files, write_sources(Dir, Files)),
    case scan_files(Lang, Written, Policy) of
        {ok, Warnings} ->
            Paths = [P || {_, P} <- Written, compilable(Lang, P)],
            case compile_paths(Lang, Dir, Paths) of
                {ok, Mods, CWarnings} -> {ok, #{modules => Mods, warnings => Warnings ++ CWarnings}};
                {error, Error} -> {error, Error}
            end;
        {error, Error} -> {error, Error}
    end.

%% Files are given as {{Name, Source}, WrittenPath}: Erlang is scanned after the
%% preprocessor (epp, so macros such as ?MODULE are expanded), Elixir from its text.
scan_files(Lang, Files, Policy) ->
    scan_files(Lang, [F || {{Name, _}, _} = F <- Files, compilable(Lang, Name)], Policy, [], []).

%% Headers (.hrl) and scripts (.exs) are written beside the sources but not compiled.
compilable(erlang, Name) -> filename:extension(Name) =:= ext(Name, ".erl");
compilable(elixir, Name) -> filename:extension(Name) =:= ext(Name, ".ex").

ext(Name, Ext) when is_binary(Name) -> list_to_binary(Ext);
ext(_, Ext) -> Ext.

scan_files(_, [], _, [], Warnings) ->
    {ok, lists:reverse(Warnings)};
scan_files(_, [], _, Refused, _) ->
    {error, #{stage => policy, findings => lists:reverse(Refused),
              message => <<"the code calls functions the sandbox's security policy refuses">>}};
scan_files(Lang, [{{Name, Source}, Path} | Rest], Policy, Refused, Warnings) ->
    case scan_file(Lang, Source, Path, Policy) of
        {ok, Findings} ->
            Tagged = [F#{file => Name} || F <- Findings],
            scan_files(Lang, Rest, Policy, lists:reverse(refused(Tagged), Refused),
                       lists:reverse([F || #{severity := warning} = F <- Tagged], Warnings));
        {error, Error} ->
            {error, #{stage => syntax, errors => [Error#{file => Name}],
                      message => <<"the source does not parse">>}}
    end.

scan_file(elixir, Source, _, Policy) ->
    scan(elixir, Source, Policy);
scan_file(erlang, _, Path, Policy) ->
    File = unicode:characters_to_list(Path),
    case epp:parse_file(File, [{includes, [filename:dirname(File)]}]) of
        {ok, Forms} ->
            case [E || {error, E} <- Forms] of
                [{Loc, Mod, Desc} | _] -> {error, error_map(Loc, Mod, Desc)};
                [] -> {ok, parse_transforms(Forms) ++ scan_erlang(Forms, Policy)}
            end;
        {error, Reason} ->
            {error, #{line => 0, message => iolist_to_binary(io_lib:format("cannot read: ~p", [Reason]))}}
    end.

%% A parse transform runs code of the user's choosing while compiling.
parse_transforms(Forms) ->
    [finding(line(Anno), refused, <<"parse_transform">>,
             <<"a parse transform runs code at compile time; the policy does not allow it">>)
     || {attribute, Anno, compile, Opts} <- Forms, has_parse_transform(Opts)].

has_parse_transform(Opts) when is_list(Opts) -> lists:any(fun has_parse_transform/1, Opts);
has_parse_transform({parse_transform, _}) -> true;
has_parse_transform(_) -> false.

write_sources(Dir, Files) ->
    [begin
         Path = filename:join([Dir, "src", Name]),
         ok = filelib:ensure_dir(Path),
         ok = file:write_file(Path, Source),
         Path
     end || {Name, Source} <- Files].

compile_paths(erlang, Dir, Paths) ->
    Ebin = filename:join(Dir, "ebin"),
    ok = filelib:ensure_path(Ebin),
    compile_erlang(Paths, Ebin, [], []);
compile_paths(elixir, Dir, Paths) ->
    Ebin = filename:join(Dir, "ebin"),
    ok = filelib:ensure_path(Ebin),
    compile_elixir(Paths, Ebin).

compile_erlang([], _, Mods, Warnings) ->
    {ok, lists:reverse(Mods), Warnings};
compile_erlang([Path | Rest], Ebin, Mods, Warnings) ->
    Opts = [binary, return_errors, return_warnings, debug_info, {i, filename:dirname(Path)}],
    case compile:file(unicode:characters_to_list(Path), Opts) of
        {ok, Mod, Bin, Ws} ->
            BeamFile = filename:join(Ebin, atom_to_list(Mod) ++ ".beam"),
            ok = file:write_file(BeamFile, Bin),
            {module, Mod} = code:load_binary(Mod, BeamFile, Bin),
            compile_erlang(Rest, Ebin, [module_entry(Mod, Bin) | Mods], Warnings ++ messages(Ws));
        {error, Errors, Ws} ->
            {error, #{stage => compile, errors => messages(Errors), warnings => messages(Ws),
                      message => <<"the source does not compile">>}}
    end.

compile_elixir(Paths, Ebin) ->
    case elixir_available() of
        false -> {error, no_elixir()};
        true ->
            Bins = [unicode:characters_to_binary(P) || P <- Paths],
            case 'Elixir.Kernel.ParallelCompiler':compile_to_path(Bins, unicode:characters_to_binary(Ebin), []) of
                {ok, Mods, Ws} ->
                    {ok, [module_entry(M, beam_of(Ebin, M)) || M <- Mods], ex_messages(Ws)};
                {error, Errors, Ws} ->
                    {error, #{stage => compile, errors => ex_messages(Errors), warnings => ex_messages(Ws),
                              message => <<"the source does not compile">>}}
            end
    end.

beam_of(Ebin, Mod) ->
    {ok, Bin} = file:read_file(filename:join(Ebin, atom_to_list(Mod) ++ ".beam")),
    Bin.

module_entry(Mod, Bin) ->
    #{module => Mod, beam => Bin, md5 => erlang:md5(Bin)}.

messages(FileErrors) ->
    [error_map(Loc, Mod, Desc, File) || {File, Descs} <- FileErrors, {Loc, Mod, Desc} <- Descs].

ex_messages(List) ->
    [#{file => base(File), line => ex_position(Pos), message => strip_banner(Msg)} || {File, Pos, Msg} <- List].

ex_position({L, _}) when is_integer(L) -> L;
ex_position(L) when is_integer(L) -> L;
ex_position(_) -> 0.

strip_banner(Msg) ->
    string:trim(re:replace(Msg, <<"^\\*\\* \\([A-Za-z.]+\\) ">>, <<>>, [{return, binary}])).

error_map(Loc, Mod, Desc) ->
    #{line => loc_line(Loc), message => unicode:characters_to_binary(Mod:format_error(Desc))}.

error_map(Loc, Mod, Desc, File) ->
    (error_map(Loc, Mod, Desc))#{file => base(File)}.

loc_line({L, _}) when is_integer(L) -> L;
loc_line(L) when is_integer(L) -> L;
loc_line(_) -> 0.

base(File) ->
    unicode:characters_to_binary(filename:basename(File)).

elixir_available() ->
    code:which('Elixir.Code') =/= non_existing
        andalso lists:keymember(elixir, 1, application:which_applications()).

no_elixir() ->
    #{stage => setup, message => <<"Elixir is not available on this node; use Erlang source, or start "
                                  "the node with Elixir on its code path">>}.

%%====================================================================
%% Hot swap
%%====================================================================

%% @doc Replace one module in a running node, as OTP's release handler does.
%% Spec: #{lang, dir, module (binary), file => {RelPath, Source}, policy,
%% force, extra (code_change's Extra), previous => Beam | undefined}.
%% Refused (unless force) when processes still run the module's old code,
%% since loading again would kill them. Cost: a scan of the node's processes
%% (capped) and one suspend/change_code/resume per process of the module.
-spec swap(map()) -> {ok, map()} | {error, map()}.
swap(#{lang := Lang, dir := Dir, file := {Name, Source}, policy := Policy} = Spec) ->
    [Path] = write_sources(Dir, [{Name, Source}]),
    case scan_files(Lang, [{{Name, Source}, Path}], Policy) of
        {error, Error} -> {error, Error};
        {ok, Warnings} ->
            case swap_compiled(Spec) of
                {ok, Report} -> {ok, Report#{warnings => Warnings ++ maps:get(warnings, Report, [])}};
                Other -> Other
            end
    end.

swap_compiled(#{lang := erlang, dir := Dir, file := {Name, Source}, module := ModBin} = Spec) ->
    [Path] = write_sources(Dir, [{Name, Source}]),
    Opts = [binary, return_errors, return_warnings, debug_info, {i, filename:dirname(Path)}],
    case compile:file(unicode:characters_to_list(Path), Opts) of
        {ok, Mod, Bin, Ws} ->
            case atom_to_binary(Mod) of
                ModBin -> replace(Mod, {beam, Bin}, Spec, messages(Ws));
                Other -> {error, module_mismatch(ModBin, [Other])}
            end;
        {error, Errors, Ws} ->
            {error, #{stage => compile, errors => messages(Errors), warnings => messages(Ws),
                      message => <<"the new version does not compile; the running one is unchanged">>}}
    end;
swap_compiled(#{lang := elixir, dir := Dir, file := {Name, Source}, module := ModBin} = Spec) ->
    case elixir_available() of
        false -> {error, no_elixir()};
        true ->
            [Path] = write_sources(Dir, [{Name, Source}]),
            Mod = binary_to_atom(ModBin),
            replace(Mod, {elixir, Path}, Spec, [])
    end.

module_mismatch(Wanted, Found) ->
    #{stage => compile,
      message => iolist_to_binary(["the source defines ", lists:join(", ", Found), ", not ", Wanted,
                                   "; reload the module the source defines"])}.

replace(Mod, Code, Spec, Warnings) ->
    Before = module_facts(Mod),
    Force = maps:get(force, Spec, false),
    case purge_old(Mod, Force) of
        {error, Error} -> {error, Error};
        {ok, Killed} ->
            Affected = callback_processes(Mod),
            case suspend_all(Affected) of
                {error, Error} -> {error, Error};
                {ok, Suspended} ->
                    try load_and_change(Mod, Code, Spec, Before, Suspended) of
                        {ok, Report} ->
                            {ok, Report#{killed => Killed, warnings => Warnings ++ maps:get(warnings, Report, [])}};
                        {error, Error} -> {error, Error}
                    after
                        resume_all(Suspended)
                    end
            end
    end.

%% Old code still running means a second load would kill those processes.
purge_old(Mod, Force) ->
    case code:soft_purge(Mod) of
        true -> {ok, []};
        false when Force ->
            Users = old_code_users(Mod),
            code:purge(Mod),
            {ok, [pid_text(P) || P <- Users]};
        false ->
            {error, #{stage => compatibility,
                      processes => [pid_text(P) || P <- old_code_users(Mod)],
                      message => <<"processes still run the previous version's old code; loading again "
                                   "would kill them (wait for them to call the new code, or force)">>}}
    end.

old_code_users(Mod) ->
    [P || P <- limited_processes(), erlang:check_process_code(P, Mod) =:= true].

limited_processes() ->
    lists:sublist(erlang:processes(), ?MAX_SCANNED_PROCESSES).

%% The processes whose callback module Mod is (gen_server, gen_statem,
%% gen_event managers are found by their initial call, as proc_lib records it)
%% and that handle system messages: a plain receive loop of Mod is never sent
%% one (it would keep it for good); it runs the new code at its next
%% external call, as always.
callback_processes(Mod) ->
    case erlang:module_loaded(Mod) of
        false -> [];
        true -> [P || P <- limited_processes(), P =/= self(), arsenal_agent_proc:callback_module(P) =:= Mod,
                      arsenal_agent_proc:answers_sys(P)]
    end.

suspend_all(Pids) ->
    suspend_all(Pids, []).
suspend_all([], Done) ->
    {ok, lists:reverse(Done)};
suspend_all([Pid | Rest], Done) ->
    try
        ok = sys:suspend(Pid, ?SYS_TIMEOUT),
        Hash = state_hash(Pid),
        suspend_all(Rest, [{Pid, Hash} | Done])
    catch
        exit:{noproc, _} -> suspend_all(Rest, Done);
        exit:Reason ->
            resume_all(lists:reverse(Done)),
            {error, #{stage => suspend, processes => [pid_text(Pid)],
                      message => iolist_to_binary(io_lib:format(
                          "~s did not answer sys:suspend (~0tP); nothing was loaded", [pid_text(Pid), Reason, 8]))}}
    end.

resume_all(Suspended) ->
    [try sys:resume(Pid, ?SYS_TIMEOUT) catch _:_ -> ok end || {Pid, _} <- Suspended],
    ok.

state_hash(Pid) ->
    try erlang:phash2(sys:get_state(Pid, ?SYS_TIMEOUT))
    catch exit:_ -> undefined
    end.

load_and_change(Mod, Code, Spec, Before, Suspended) ->
    case load(Mod, Code, maps:get(dir, Spec)) of
        {error, Error} -> {error, Error};
        {ok, Bin, Warnings} ->
            After = module_facts(Mod),
            Extra = maps:get(extra, Spec, []),
            %% code_change/3 is optional: without it the state is kept as it is (as
            %% l(Mod) in the shell would), rather than crash the process with undef.
            HasCodeChange = erlang:function_exported(Mod, code_change, 3),
            Changes = [{Pid, Hash, case HasCodeChange of
                                       true -> change_code(Pid, Mod, maps:get(vsn, Before), Extra);
                                       false -> skipped
                                   end} || {Pid, Hash} <- Suspended],
            Failed = [C || {_, _, R} = C <- Changes, R =/= ok, R =/= skipped],
            Report = #{module => Mod,
                       beam => Bin,
                       md5 => erlang:md5(Bin),
                       warnings => Warnings,
                       exports_removed => maps:get(exports, Before) -- maps:get(exports, After),
                       exports_added => maps:get(exports, After) -- maps:get(exports, Before),
                       processes => [process_report(C) || C <- Changes]},
            case Failed of
                [] -> {ok, Report#{rolled_back => false}};
                _ -> roll_back(Mod, Spec, Before, After, Changes, Report)
            end
    end.

load(Mod, {beam, Bin}, Dir) ->
    BeamFile = filename:join([Dir, "ebin", atom_to_list(Mod) ++ ".beam"]),
    ok = filelib:ensure_dir(BeamFile),
    ok = file:write_file(BeamFile, Bin),
    case code:load_binary(Mod, BeamFile, Bin) of
        {module, Mod} -> {ok, Bin, []};
        {error, Reason} ->
            {error, #{stage => load, message => iolist_to_binary(io_lib:format("the VM refused the module: ~p", [Reason]))}}
    end;
load(Mod, {elixir, Path}, Dir) ->
    Ebin = filename:join(Dir, "ebin"),
    ok = filelib:ensure_path(Ebin),
    Src = unicode:characters_to_binary(Path),
    case 'Elixir.Kernel.ParallelCompiler':compile_to_path([Src], unicode:characters_to_binary(Ebin), []) of
        {ok, Mods, Ws} ->
            case lists:member(Mod, Mods) of
                true -> {ok, beam_of(Ebin, Mod), [W || #{message := M} = W <- ex_messages(Ws),
                                                       string:prefix(M, <<"redefining module">>) =:= nomatch]};
                false ->
                    {error, module_mismatch(mod_text(Mod), [mod_text(M) || M <- Mods])}
            end;
        {error, Errors, Ws} ->
            {error, #{stage => compile, errors => ex_messages(Errors), warnings => ex_messages(Ws),
                      message => <<"the new version does not compile; the running one is unchanged">>}}
    end.

change_code(Pid, Mod, OldVsn, Extra) ->
    try sys:change_code(Pid, Mod, OldVsn, Extra, ?SYS_TIMEOUT) of
        ok -> ok;
        {error, Reason} -> {error, Reason};
        Other -> {error, Other}
    catch
        exit:Reason -> {error, Reason}
    end.

process_report({Pid, Hash, Result}) ->
    Name = case registered_name(Pid) of
               undefined -> undefined;
               N -> atom_to_binary(N)
           end,
    Base = #{pid => pid_text(Pid), name => Name},
    case Result of
        ok -> Base#{code_change => ok, state_changed => state_hash(Pid) =/= Hash};
        skipped -> Base#{code_change => skipped, state_changed => false};
        {error, Reason} -> Base#{code_change => error, reason => short(Reason), state_changed => false}
    end.

%% A code_change failed: put the previous version back (the processes whose
%% code_change succeeded are downgraded with {down, NewVsn}), so nothing runs
%% new code with an old state.
roll_back(Mod, #{previous := Prev} = Spec, Before, After, Changes, Report) when is_binary(Prev) ->
    code:soft_purge(Mod),
    {ok, _, _} = load(Mod, {beam, Prev}, maps:get(dir, Spec)),
    Extra = maps:get(extra, Spec, []),
    [change_code(Pid, Mod, {down, maps:get(vsn, After)}, Extra) || {Pid, _, ok} <- Changes],
    _ = Before,
    {error, #{stage => code_change, processes => maps:get(processes, Report), rolled_back => true,
              message => <<"code_change failed in at least one process; the previous version was put back">>}};
roll_back(_, _, _, _, _, Report) ->
    {error, #{stage => code_change, processes => maps:get(processes, Report), rolled_back => false,
              message => <<"code_change failed in at least one process and no previous version is known; "
                           "the new version stays loaded">>}}.

%% @doc What is loaded of a module: its exports, its vsn, whether old code exists.
-spec module_facts(atom()) -> map().
module_facts(Mod) ->
    case erlang:module_loaded(Mod) of
        false -> #{loaded => false, exports => [], vsn => undefined, old_code => false};
        true ->
            Exports = [iolist_to_binary([atom_to_binary(F), "/", integer_to_binary(A)])
                       || {F, A} <- Mod:module_info(exports), F =/= module_info, F =/= '__info__'],
            Vsn = case lists:keyfind(vsn, 1, Mod:module_info(attributes)) of
                      {vsn, [V]} -> V;
                      {vsn, V} -> V;
                      false -> undefined
                  end,
            #{loaded => true, exports => lists:sort(Exports), vsn => Vsn,
              old_code => erlang:check_old_code(Mod), md5 => Mod:module_info(md5)}
    end.

%% @doc Load a stored version (rollback): #{module, beam, dir, force, extra}.
-spec load_version(map()) -> {ok, map()} | {error, map()}.
load_version(#{module := ModBin, beam := Bin} = Spec) ->
    case beam_lib:info(Bin) of
        {error, beam_lib, Reason} ->
            {error, #{stage => load, message => iolist_to_binary(io_lib:format("not a beam: ~p", [Reason]))}};
        Info ->
            Mod = proplists:get_value(module, Info),
            case atom_to_binary(Mod) of
                ModBin -> replace(Mod, {beam, Bin}, Spec, []);
                Other -> {error, module_mismatch(ModBin, [Other])}
            end
    end.

%%====================================================================
%% Evaluation
%%====================================================================

%% @doc Evaluate code once: #{lang, code, binding => [{Name, Value}], timeout_ms,
%% policy}. The code runs in a process of its own with a group leader that
%% captures its output; at the timeout that process is killed. Returns the
%% value, the new binding, the output and the warnings.
-spec eval(map()) -> {ok, map()} | {error, map()}.
eval(#{lang := Lang, code := Code, timeout_ms := Timeout} = Spec) ->
    Policy = maps:get(policy, Spec, #{}),
    case scan(Lang, Code, Policy) of
        {error, Error} -> {error, #{kind => syntax, message => maps:get(message, Error), line => maps:get(line, Error)}};
        {ok, Findings} ->
            case refused(Findings) of
                [] ->
                    Binding = binding(Lang, maps:get(binding, Spec, [])),
                    Warnings = [F || #{severity := warning} = F <- Findings],
                    run_eval(Lang, Code, Binding, Timeout, Warnings);
                Refused ->
                    {error, #{kind => policy, findings => Refused,
                              message => <<"the code calls functions the security policy refuses">>}}
            end
    end.

binding(erlang, Pairs) -> [{binary_to_atom(N), V} || {N, V} <- Pairs];
binding(elixir, Pairs) -> [{binary_to_atom(N), V} || {N, V} <- Pairs].

run_eval(Lang, Code, Binding, Timeout, Warnings) ->
    Capture = spawn_capture(),
    Parent = self(),
    {Pid, Ref} = spawn_monitor(fun() ->
        group_leader(Capture, self()),
        register_capture(self(), Capture),
        Parent ! {self(), evaluated, evaluate(Lang, Code, Binding)}
    end),
    receive
        {Pid, evaluated, Result} ->
            erlang:demonitor(Ref, [flush]),
            finish_eval(Result, Capture, Warnings);
        {'DOWN', Ref, process, Pid, Reason} ->
            Output = stop_capture(Capture),
            {error, #{kind => exit, message => short(Reason), output => Output}}
    after Timeout ->
        exit(Pid, kill),
        receive {'DOWN', Ref, process, Pid, _} -> ok end,
        Output = stop_capture(Capture),
        {error, #{kind => timeout, output => Output,
                  message => iolist_to_binary(io_lib:format(
                      "the code ran longer than ~b ms and was killed (processes it started keep running)",
                      [Timeout]))}}
    end.

finish_eval({ok, Value, NewBinding, LintWarnings}, Capture, Warnings) ->
    {Output, Captured} = stop_capture_with_warnings(Capture),
    {ok, #{value => bounded(Value),
           binding => [{atom_to_binary(K), bounded(V)} || {K, V} <- NewBinding, is_atom(K)],
           output => Output,
           warnings => Warnings ++ LintWarnings ++ Captured}};
finish_eval({error, Error}, Capture, _) ->
    {Output, _} = stop_capture_with_warnings(Capture),
    {error, Error#{output => Output}}.

evaluate(erlang, Code, Binding) ->
    try
        {ok, Tokens, _} = erl_scan:string(terminated(Code), 1),
        {ok, Exprs} = erl_parse:parse_exprs(Tokens),
        Lint = case erl_lint:exprs(Exprs, Binding) of
                   {ok, Ws} -> messages(Ws);
                   {error, Es, _} -> throw({lint, Es})
               end,
        {value, Value, New} = erl_eval:exprs(Exprs, lists:foldl(fun({K, V}, Bs) -> erl_eval:add_binding(K, V, Bs) end, erl_eval:new_bindings(), Binding)),
        {ok, Value, erl_eval:bindings(New), Lint}
    catch
        throw:{lint, [{_, [{Loc, Mod, Desc} | _]} | _]} ->
            {error, (error_map(Loc, Mod, Desc))#{kind => compile}};
        error:{badmatch, {error, {Loc, Mod, Desc}, _}} ->
            {error, (error_map(Loc, Mod, Desc))#{kind => syntax}};
        error:{badmatch, {error, {Loc, Mod, Desc}}} ->
            {error, (error_map(Loc, Mod, Desc))#{kind => syntax}};
        Class:Reason:Stack ->
            {error, #{kind => exception, class => Class,
                      message => iolist_to_binary(erl_error:format_exception(Class, Reason, Stack))}}
    end;
evaluate(elixir, Code, Binding) ->
    case elixir_available() of
        false -> {error, (no_elixir())#{kind => setup}};
        true -> with_diagnostics(fun() -> evaluate_elixir(Code, Binding) end)
    end.

evaluate_elixir(Code, Binding) ->
    try 'Elixir.Code':eval_string(Code, Binding, [{file, <<"eval">>}]) of
        {Value, New} -> {ok, Value, New, []}
    catch
        error:#{'__struct__' := Struct} = E when Struct =:= 'Elixir.CompileError';
                                                 Struct =:= 'Elixir.SyntaxError';
                                                 Struct =:= 'Elixir.TokenMissingError' ->
            Kind = case Struct of 'Elixir.CompileError' -> compile; _ -> syntax end,
            {error, #{kind => Kind, line => line_or_zero(maps:get(line, E, 0)),
                      message => maps:get(description, E, <<>>)}};
        Class:Reason:Stack ->
            {error, #{kind => exception, class => Class,
                      message => 'Elixir.Exception':format(Class, Reason, Stack)}}
    end.

%% Elixir 1.15 and later log compile errors and then raise "cannot compile file (errors
%% have been logged)" with no line; Code.with_diagnostics/2 (1.15+) hands the errors and
%% warnings back instead, each with its file and line. Older releases raise the error
%% itself and print warnings (captured as output).
with_diagnostics(Evaluate) ->
    _ = code:ensure_loaded('Elixir.Code'),
    case erlang:function_exported('Elixir.Code', with_diagnostics, 2) of
        false -> Evaluate();
        true ->
            {Result, Diagnostics} = 'Elixir.Code':with_diagnostics([{log, false}], Evaluate),
            Errors = [diagnostic(D) || #{severity := error} = D <- Diagnostics],
            Warnings = [diagnostic(D) || #{severity := warning} = D <- Diagnostics],
            case Result of
                {ok, Value, New, Ws} -> {ok, Value, New, Ws ++ Warnings};
                {error, #{kind := compile} = Error} when Errors =/= [] ->
                    [#{line := Line, message := Message} | _] = Errors,
                    {error, Error#{line => Line, message => Message, errors => Errors}};
                {error, Error} -> {error, Error}
            end
    end.

diagnostic(#{message := Message} = D) ->
    File = case maps:get(file, D, nil) of
               F when is_binary(F) -> base(F);
               _ -> <<"nofile">>
           end,
    #{file => File, line => ex_position(maps:get(position, D, 0)), severity => maps:get(severity, D),
      message => unicode:characters_to_binary(Message)}.

line_or_zero(L) when is_integer(L) -> L;
line_or_zero(_) -> 0.

%% Terms too large to ship back are replaced by a printed, cut prefix.
bounded(Value) ->
    case erts_debug:flat_size(Value) > ?MAX_VALUE_WORDS of
        false -> Value;
        true -> {'$arsenal_truncated', iolist_to_binary(io_lib:format("~P", [Value, 40]))}
    end.

short(Reason) ->
    iolist_to_binary(io_lib:format("~0tP", [Reason, 12])).

pid_text(Pid) -> list_to_binary(pid_to_list(Pid)).

registered_name(Pid) ->
    case erlang:process_info(Pid, registered_name) of
        {registered_name, N} -> N;
        _ -> undefined
    end.

%%--------------------------------------------------------------------
%% Output capture: a minimal io server used as the evaluator's group leader.
%% It keeps at most ?MAX_OUTPUT bytes; input requests get eof. A sandbox's
%% standard_error proxy (arsenal_agent_sandbox) sends warnings written by an
%% evaluator here too, as {warning, Chars}.

spawn_capture() ->
    spawn(fun() -> capture_loop(<<>>, [], false) end).

register_capture(Evaluator, Capture) ->
    case ets:whereis(arsenal_capture) of
        undefined -> ok;
        _ -> try ets:insert(arsenal_capture, {Evaluator, Capture}) catch error:badarg -> ok end, ok
    end.

stop_capture(Capture) ->
    element(1, stop_capture_with_warnings(Capture)).

stop_capture_with_warnings(Capture) ->
    Ref = monitor(process, Capture),
    Capture ! {stop, self(), Ref},
    receive
        {Ref, Output, Warnings} -> demonitor(Ref, [flush]), {Output, Warnings};
        {'DOWN', Ref, _, _, _} -> {<<>>, []}
    after 5000 -> exit(Capture, kill), {<<>>, []}
    end.

capture_loop(Out, Warnings, Cut) ->
    receive
        {io_request, From, ReplyAs, Request} ->
            {Reply, Out1, Cut1} = io_request(Request, Out, Cut),
            From ! {io_reply, ReplyAs, Reply},
            capture_loop(Out1, Warnings, Cut1);
        {warning, Chars} when length(Warnings) < 50 ->
            capture_loop(Out, [#{severity => warning, message => string:trim(Chars)} | Warnings], Cut);
        {warning, _} ->
            capture_loop(Out, Warnings, Cut);
        {stop, From, Ref} ->
            Final = case Cut of true -> <<Out/binary, "\n... (output cut)">>; false -> Out end,
            From ! {Ref, Final, lists:reverse(Warnings)}
    after ?REPL_IDLE_MS ->
        ok
    end.

io_request({put_chars, Enc, Chars}, Out, Cut) ->
    append(unicode:characters_to_binary(Chars, Enc), Out, Cut);
io_request({put_chars, Enc, M, F, A}, Out, Cut) ->
    Chars = try apply(M, F, A) catch C:R -> io_lib:format("~p", [{C, R}]) end,
    append(unicode:characters_to_binary(Chars, Enc), Out, Cut);
io_request({put_chars, Chars}, Out, Cut) ->
    append(unicode:characters_to_binary(Chars, latin1), Out, Cut);
io_request({requests, Reqs}, Out, Cut) ->
    lists:foldl(fun(R, {_, O, C}) -> io_request(R, O, C) end, {ok, Out, Cut}, Reqs);
io_request(getopts, Out, Cut) ->
    {[{binary, false}, {encoding, unicode}], Out, Cut};
io_request({get_geometry, _}, Out, Cut) ->
    {{error, enotsup}, Out, Cut};
io_request({setopts, _}, Out, Cut) ->
    {ok, Out, Cut};
io_request(_, Out, Cut) ->
    {eof, Out, Cut}.

append(Bin, Out, Cut) when is_binary(Bin) ->
    case byte_size(Out) + byte_size(Bin) > ?MAX_OUTPUT of
        false -> {ok, <<Out/binary, Bin/binary>>, Cut};
        true -> {ok, binary:part(<<Out/binary, Bin/binary>>, 0, ?MAX_OUTPUT), true}
    end;
append(_, Out, Cut) ->
    {{error, badarg}, Out, Cut}.

%%====================================================================
%% REPL sessions
%%====================================================================

%% @doc Start a REPL session: a process keeping the bindings between
%% expressions, owned by Owner (a process of Arsenal's); it ends when its owner
%% goes (Arsenal disconnects) or after 30 idle minutes.
-spec repl_start(erlang | elixir, pid()) -> {ok, pid()}.
repl_start(Lang, Owner) ->
    Pid = spawn(fun() ->
        Ref = monitor(process, Owner),
        repl_loop(Lang, Ref, [])
    end),
    {ok, Pid}.

%% @doc Evaluate one input in a session; the bindings it makes are kept.
-spec repl_eval(pid(), binary(), map()) -> {ok, map()} | {error, map()}.
repl_eval(Session, Code, Opts) when is_pid(Session) ->
    Timeout = maps:get(timeout_ms, Opts, 5000),
    Ref = monitor(process, Session),
    Session ! {eval, self(), Ref, Code, Opts},
    receive
        {Ref, Result} -> demonitor(Ref, [flush]), Result;
        {'DOWN', Ref, _, _, _} ->
            {error, #{kind => session, message => <<"the REPL session is gone; start a new one">>}}
    after Timeout + 5000 ->
        demonitor(Ref, [flush]),
        {error, #{kind => timeout, message => <<"the REPL session did not answer">>}}
    end.

%% @doc End a session.
-spec repl_stop(pid()) -> ok.
repl_stop(Session) ->
    exit(Session, shutdown),
    ok.

repl_loop(Lang, OwnerRef, Binding) ->
    receive
        {eval, From, Ref, Code, Opts} ->
            Pairs = [{atom_to_binary(K), V} || {K, V} <- Binding, is_atom(K)],
            Spec = Opts#{lang => Lang, code => Code, binding => Pairs},
            Result = eval(Spec#{timeout_ms => maps:get(timeout_ms, Opts, 5000)}),
            New = case Result of
                      {ok, #{binding := NB}} -> binding(Lang, NB);
                      _ -> Binding
                  end,
            From ! {Ref, Result},
            repl_loop(Lang, OwnerRef, New);
        {'DOWN', OwnerRef, _, _, _} ->
            ok
    after ?REPL_IDLE_MS ->
        ok
    end.

%% @doc Whether an input is complete or waits for more lines (an open `do`
%% block, bracket or string; an Erlang expression without its final full stop).
-spec input_complete(erlang | elixir, binary()) -> boolean().
input_complete(erlang, Code) ->
    case lists:reverse(string:trim(unicode:characters_to_list(Code), trailing)) of
        [$. | _] -> true;
        _ -> false
    end;
input_complete(elixir, Code) ->
    case elixir_available() of
        false -> true;
        true ->
            case 'Elixir.Code':string_to_quoted(Code, [{columns, true}]) of
                {ok, _} -> true;
                {error, {_, Message, _}} ->
                    Text = iolist_to_binary(message_text(Message)),
                    binary:match(Text, [<<"missing terminator">>, <<"expression is incomplete">>]) =:= nomatch
            end
    end.

%% @doc Names for completion: modules starting with Prefix, or, for
%% "mod:fun" / "Mod.fun", that module's exported functions. Capped at 50.
-spec repl_complete(erlang | elixir, binary()) -> [binary()].
repl_complete(Lang, Prefix) ->
    case split_completion(Lang, Prefix) of
        {module, ModPrefix} ->
            Mods = [display_module(Lang, M) || {M, _} <- code:all_loaded()],
            lists:sublist(lists:usort([M || M <- Mods, string:prefix(M, ModPrefix) =/= nomatch]), 50);
        {function, ModText, Sep, FunPrefix} ->
            case existing_module(Lang, ModText) of
                undefined -> [];
                Mod ->
                    Funs = [iolist_to_binary([ModText, Sep, atom_to_binary(F), "/", integer_to_binary(A)])
                            || {F, A} <- Mod:module_info(exports),
                               string:prefix(atom_to_binary(F), FunPrefix) =/= nomatch],
                    lists:sublist(lists:usort(Funs), 50)
            end
    end.

split_completion(erlang, Prefix) ->
    case binary:split(Prefix, <<":">>) of
        [M, F] -> {function, M, <<":">>, F};
        [M] -> {module, M}
    end;
split_completion(elixir, Prefix) ->
    case string:split(Prefix, <<".">>, trailing) of
        [M, F] when F =:= <<>>; (binary_part(F, 0, 1) >= <<"a">> andalso binary_part(F, 0, 1) =< <<"z">>) ->
            {function, M, <<".">>, F};
        _ -> {module, Prefix}
    end.

display_module(elixir, M) ->
    case atom_to_binary(M) of
        <<"Elixir.", Rest/binary>> -> Rest;
        Other -> <<":", Other/binary>>
    end;
display_module(erlang, M) -> atom_to_binary(M).

existing_module(Lang, Text) ->
    Name = case {Lang, Text} of
               {elixir, <<":", Erl/binary>>} -> Erl;
               {elixir, _} -> <<"Elixir.", Text/binary>>;
               {erlang, _} -> Text
           end,
    try binary_to_existing_atom(Name) of
        Mod -> case erlang:module_loaded(Mod) of true -> Mod; false -> undefined end
    catch error:badarg -> undefined
    end.
