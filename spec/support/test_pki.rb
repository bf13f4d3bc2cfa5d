# frozen_string_literal: true

require "openssl"
require "tmpdir"
require "fileutils"

# A CA and the certificates it signed for a server (localhost, 127.0.0.1)
# and a client, as PEM files in a directory of the spec's own, made for the
# run (no key is committed).
class TestPki
  attr_reader :dir

  def initialize
    @dir = Dir.mktmpdir("ferrocable-pki")
    @ca_key = OpenSSL::PKey::EC.generate("prime256v1")
    @ca = certificate("/CN=ferrocable test CA", @ca_key, nil, "basicConstraints" => "critical,CA:TRUE",
                                                             "keyUsage" => "critical,keyCertSign,cRLSign")
    write("ca.pem", @ca.to_pem)
    { "server" => "DNS:localhost,IP:127.0.0.1", "client" => "DNS:client" }.each do |who, names|
      key = OpenSSL::PKey::EC.generate("prime256v1")
      write("#{who}.key", key.to_pem)
      write("#{who}.pem", certificate("/CN=#{who}", key, @ca, "subjectAltName" => names).to_pem)
    end
  end

  def path(name)
    File.join(@dir, name)
  end

  def remove
    FileUtils.rm_rf(@dir)
  end

  private

  def certificate(subject, key, issuer, extensions)
    cert = OpenSSL::X509::Certificate.new
    cert.version = 2
    cert.serial = OpenSSL::BN.rand(64)
    cert.subject = OpenSSL::X509::Name.parse(subject)
    cert.issuer = issuer ? issuer.subject : cert.subject
    cert.public_key = key
    cert.not_before = Time.now - 60
    cert.not_after = Time.now + 3600
    factory = OpenSSL::X509::ExtensionFactory.new(cert, issuer || cert)
    extensions.each { |name, value| cert.add_extension(factory.create_extension(name, value)) }
    cert.sign(issuer ? @ca_key : key, OpenSSL::Digest.new("SHA256"))
    cert
  end

  def write(name, text)
    File.write(path(name), text)
  end
end
