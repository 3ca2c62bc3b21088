// A real OpenID provider (panva's certified oidc-provider) on loopback, for the client's
// sign-in tests: `node provider.mjs CONFIG_JSON`, where CONFIG_JSON names the issuer, the
// port, one client (id, secret, redirect URI) and the accounts with their groups. Its
// development login page takes any password for a listed account; consent is given, as to
// a first-party client. It prints "listening <issuer>" when it answers, and stops when its
// standard input closes, so a test that dies leaves no provider behind.
import Provider from 'oidc-provider';

const config = JSON.parse(process.argv[2]);
const accounts = config.accounts;
const scopes = ['openid', 'profile', 'email', 'groups'];
const claims = ['preferred_username', 'name', 'email', 'groups'];

const provider = new Provider(config.issuer, {
  clients: [{
    client_id: config.client_id,
    client_secret: config.client_secret,
    redirect_uris: [config.redirect_uri],
    post_logout_redirect_uris: config.post_logout_redirect_uris || [],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    ...(config.jwks ? { id_token_signed_response_alg: 'ES256' } : {}),
  }],
  // Keys of this run's own when the test gives them (a provider that rotated its keys), else
  // the library's development keys.
  ...(config.jwks ? { jwks: config.jwks } : {}),
  claims: { openid: ['sub'], profile: ['preferred_username', 'name'], email: ['email'], groups: ['groups'] },
  scopes,
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  findAccount: (ctx, id) => (Object.hasOwn(accounts, id) ? {
    accountId: id,
    claims: () => ({
      sub: id, preferred_username: id, name: id, email: `${id}@example.test`, groups: accounts[id].groups,
    }),
  } : undefined),
  async loadExistingGrant(ctx) {
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope(scopes.join(' '));
    grant.addOIDCClaims(claims);
    await grant.save();
    return grant;
  },
  cookies: { keys: ['pbft-ci-sign-in-tests'] },
});

const server = provider.listen(config.port, '127.0.0.1', () => console.log(`listening ${config.issuer}`));
process.stdin.on('end', () => server.close(() => process.exit(0)));
process.stdin.resume();
